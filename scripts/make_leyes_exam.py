"""Write examples/exams/leyes.jsonl: the document exam over examples/docs (see examples/exams/README.md).

The questions, options and references below were written by hand for this repository (our own Spanish
sentences; the facts come from the five illustrative guides in examples/docs only). This script turns them
into exam items: ids, the abstention option, a gold position that varies from item to item, and a check of
every line by `amauta.data.exam_items`. Rerun it after editing a fact; the output is byte-identical
when nothing changed:

    .venv/bin/python scripts/make_leyes_exam.py [--out examples/exams/leyes.jsonl]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from amauta.data.exam_items import ABSTAIN_OPTION, write_exam  # noqa: E402

SUBSTANTIVE_OPTIONS = 4  # the gold and three distractors; "Los documentos no lo indican" comes last


@dataclass
class Phrasing:
    """One question; a worked example's phrasings carry their own numbers (gold, distractors, reference)."""

    question: str
    gold: str | None = None
    distractors: tuple[str, ...] | None = None
    reference: str | None = None
    key_facts: tuple[str, ...] | None = None


@dataclass
class Fact:
    """A fact of the corpus (or, with answerable=False, a topic the corpus leaves open) and its phrasings."""

    id: str
    file: str
    article: str
    group: str | None
    train: tuple = ()
    dev: tuple = ()
    test: tuple = ()
    gold: str = ABSTAIN_OPTION
    distractors: tuple[str, ...] = ()
    reference: str = ""
    key_facts: tuple[str, ...] = ()
    distractor_facts: tuple[str, ...] | None = None
    kind: str = "fact"
    answerable: bool = True
    extra: dict = field(default_factory=dict)


def day_options(gold: int, *others: int) -> dict:
    return {"gold": f"Día {gold}", "distractors": tuple(f"Día {d}" for d in others), "key_facts": (f"día {gold}",)}


FREQUENCIES = {
    "mes": ("Cada mes", "cada mes | mensual | mensualmente | mensuales"),
    "semestre": ("Cada semestre", "cada semestre | semestral | semestralmente | semestrales"),
    "año": ("Una vez al año", "una vez al año | anual | anualmente | cada año"),
    "trimestre": ("Cada trimestre", "cada trimestre | trimestral | trimestralmente"),
}


def frequency_options(gold: str, *others: str) -> dict:
    return {"gold": FREQUENCIES[gold][0], "distractors": tuple(FREQUENCIES[o][0] for o in others),
            "key_facts": (FREQUENCIES[gold][1],), "distractor_facts": tuple(FREQUENCIES[o][1] for o in others)}


def usd(value: float) -> str:
    """'USD 1.240', 'USD 5,40': Spanish separators."""
    whole, cents = f"{value:,.2f}".split(".")
    whole = whole.replace(",", ".")
    return f"USD {whole}" if cents == "00" else f"USD {whole},{cents}"


def worked(question: str, base: float, rate: float, wrong_rates: tuple[float, ...], reference: str) -> Phrasing:
    """A worked example: `rate` applied to `base`; distractors apply the other rates (1.15 = the total)."""
    gold = usd(round(base * rate, 2))
    return Phrasing(question, gold=gold, distractors=tuple(usd(round(base * r, 2)) for r in wrong_rates),
                    reference=reference.format(gold=gold), key_facts=(gold,))


def deadline(question: str, digit_day: int, month: str, next_month: str, reference: str) -> Phrasing:
    gold = f"{digit_day} de {next_month}"
    distractors = (f"{digit_day} de {month}", f"{digit_day + 2} de {next_month}", f"{digit_day - 2} de {next_month}")
    return Phrasing(question, gold=gold, distractors=distractors, reference=reference.format(gold=gold),
                    key_facts=(gold,))


IVA, RENTA, RIMPE, RUC, RET = "iva.md", "renta.md", "rimpe.md", "ruc.html", "retenciones.pdf"
PERCENTS = ("15%", "12%", "10%")

FACTS = [
    # --- iva.md ------------------------------------------------------------------------------------------
    Fact("iva-tarifa-general", IVA, "Art. 2", "qa", gold="15%", distractors=("12%", "10%", "30%"),
         key_facts=("15%",), reference="La tarifa general del IVA es del 15%.",
         train=("¿Cuál es la tarifa general del IVA en Ecuador?",
                "¿Qué porcentaje de IVA se cobra sobre un producto gravado?"),
         dev=("¿Cuánto IVA, en porcentaje, se aplica hoy a las ventas gravadas?",),
         test=("¿Qué porcentaje de IVA debe cobrar una tienda al vender un bien que no tiene tarifa 0%?",
               "Si vendo un servicio gravado, ¿con qué tarifa de IVA lo facturo?",
               "¿A cuánto asciende la tarifa general vigente del impuesto al valor agregado?")),
    Fact("iva-tarifa-anterior", IVA, "Art. 2", "document_only", gold="12%", distractors=("15%", "10%", "30%"),
         key_facts=("12%",), reference="Hasta el 31 de marzo de 2024 la tarifa general del IVA era del 12%.",
         dev=("¿Qué tarifa general de IVA regía antes de abril de 2024?",),
         test=("Antes del último cambio de tarifa, ¿qué porcentaje de IVA se cobraba en una venta gravada?",
               "¿Con qué porcentaje de IVA se facturaba una venta gravada en marzo de 2024?",
               "¿Cuál era la tarifa general del IVA hasta el 31 de marzo de 2024?")),
    Fact("iva-fecha-cambio", IVA, "Art. 2", "document_only", gold="1 de abril de 2024",
         distractors=("31 de marzo de 2024", "1 de enero de 2024", "1 de julio de 2024"),
         key_facts=("1 de abril de 2024",), reference="La tarifa general del 15% rige desde el 1 de abril de 2024.",
         dev=("¿Desde qué fecha se cobra el IVA del 15%?",),
         test=("¿A partir de qué día entró en vigor la tarifa general del 15% del IVA?",
               "¿Cuándo empezó a aplicarse la tarifa del 15% en lugar de la del 12%?",
               "¿Qué fecha marca el inicio de la tarifa general vigente del IVA?")),
    Fact("iva-medicamentos-0", IVA, "Art. 3", "document_only", gold="0%", distractors=PERCENTS, key_facts=("0%",),
         reference="Los medicamentos de uso humano tienen tarifa 0% de IVA.",
         dev=("¿Qué tarifa de IVA tienen los medicamentos de uso humano?",),
         test=("Al comprar medicinas para una persona en la farmacia, ¿qué porcentaje de IVA se paga?",
               "¿Con qué tarifa de IVA se venden los remedios de uso humano?",
               "¿Cuánto IVA, en porcentaje, lleva la venta de un medicamento para personas?")),
    Fact("iva-arriendo-vivienda-0", IVA, "Art. 4", "qa", gold="0%", distractors=PERCENTS, key_facts=("0%",),
         reference="El arriendo de un inmueble destinado solo a vivienda tiene tarifa 0% de IVA.",
         train=("¿Qué tarifa de IVA tiene el arriendo de una vivienda?",
                "¿Con qué tarifa de IVA se grava el alquiler de una casa para vivir?"),
         dev=("¿Con qué porcentaje de IVA se grava el arriendo de un departamento usado solo como vivienda?",),
         test=("Si alquilo un inmueble exclusivamente para vivir en él, ¿qué tarifa de IVA corresponde?",
               "¿Cuánto IVA, en porcentaje, debe cobrar el dueño de una casa que la arrienda como vivienda familiar?",
               "¿Qué porcentaje de IVA se aplica al alquiler de inmuebles destinados únicamente a vivienda?")),
    Fact("iva-declaracion-mensual", IVA, "Art. 5", "qa", **frequency_options("mes", "semestre", "año", "trimestre"),
         reference="Quien vende bienes o presta servicios gravados declara el IVA cada mes.",
         train=("¿Cada cuánto tiempo declara el IVA una persona que vende bienes o servicios?",
                "¿Con qué frecuencia presenta la declaración del IVA un negocio que vende productos gravados?"),
         dev=("¿Cada cuánto debe declarar el IVA una sociedad que presta servicios gravados?",),
         test=("Tengo un almacén que vende ropa con IVA: ¿cada cuánto presento mi declaración de IVA?",
               "¿Qué periodicidad tiene la declaración de IVA de una persona que presta servicios gravados?",
               "¿Cada cuánto tiempo hay que presentar la declaración del IVA cuando se venden bienes con tarifa 15%?")),
    Fact("iva-declaracion-semestral", IVA, "Art. 5", "document_only",
         **frequency_options("semestre", "mes", "año", "trimestre"),
         reference="Quien solo vende bienes o servicios con tarifa 0% declara el IVA cada semestre.",
         dev=("¿Cada cuánto declara el IVA quien solo vende productos con tarifa 0%?",),
         test=("Si todas mis ventas son de bienes con tarifa 0%, ¿cada cuánto presento la declaración de IVA?",
               "¿Con qué periodicidad declara el IVA un contribuyente al que sus clientes le retienen todo el IVA "
               "de sus ventas?",
               "Una frutería que solo vende frutas sin procesar, ¿cada cuánto tiempo declara el IVA?")),
    Fact("iva-plazo-digito-3", IVA, "Art. 6", "qa", **day_options(14, 12, 16, 24),
         reference="Con noveno dígito 3, la declaración mensual del IVA vence el día 14 del mes siguiente.",
         train=("Si el noveno dígito de mi RUC es 3, ¿hasta qué día del mes siguiente puedo declarar el IVA?",
                "¿Cuál es la fecha máxima de la declaración mensual de IVA para un RUC cuyo noveno dígito es 3?"),
         dev=("Mi cédula tiene un 3 en el noveno dígito: ¿qué día vence mi declaración mensual de IVA?",),
         test=("¿Hasta qué día del mes tiene plazo para declarar el IVA un contribuyente con noveno dígito 3?",
               "El noveno dígito de mi RUC es tres. ¿Cuál es el último día para presentar el IVA del mes anterior?",
               "Para el noveno dígito 3, ¿qué día es el límite de la declaración de IVA mensual?")),
    Fact("iva-plazo-digito-7", IVA, "Art. 6", "document_only", **day_options(22, 20, 24, 14),
         reference="Con noveno dígito 7, la declaración mensual del IVA vence el día 22 del mes siguiente.",
         dev=("Si el noveno dígito de mi RUC es 7, ¿hasta qué día puedo declarar el IVA mensual?",),
         test=("¿Qué día vence la declaración mensual de IVA cuando el noveno dígito del RUC es 7?",
               "Tengo un 7 como noveno dígito de la cédula: ¿cuál es mi día máximo para declarar el IVA?",
               "¿Cuál es el plazo, en días del mes siguiente, para declarar el IVA con noveno dígito siete?")),
    Fact("iva-plazo-digito-0", IVA, "Art. 6", "qa", **day_options(28, 10, 26, 20),
         reference="Con noveno dígito 0, la declaración mensual del IVA vence el día 28 del mes siguiente.",
         train=("¿Hasta qué día se declara el IVA si el noveno dígito del RUC es 0?",
                "Para un RUC con noveno dígito cero, ¿cuál es el día máximo de la declaración mensual de IVA?"),
         dev=("Mi noveno dígito es 0: ¿qué día vence mi IVA mensual?",),
         test=("¿Cuál es la fecha límite del IVA mensual para quien tiene 0 como noveno dígito?",
               "Si el noveno dígito de la cédula es cero, ¿hasta qué día del mes siguiente se presenta el IVA?",
               "¿Qué día del mes es el plazo del IVA para los contribuyentes con noveno dígito 0?")),
    Fact("iva-feriado", IVA, "Art. 6", "document_only", gold="Pasa al siguiente día hábil",
         distractors=("Se adelanta al día hábil anterior", "Vence igual ese día", "Pasa al día 28 del mes"),
         key_facts=("siguiente día hábil | día hábil siguiente | próximo día hábil",),
         distractor_facts=("hábil anterior | día anterior", "vence igual", "día 28"),
         reference="Si la fecha máxima cae en fin de semana o feriado, el plazo pasa al siguiente día hábil.",
         dev=("¿Qué pasa con el plazo de la declaración si la fecha máxima cae en un feriado?",),
         test=("Si mi fecha límite para declarar el IVA es un sábado, ¿hasta cuándo tengo plazo?",
               "¿Qué ocurre con el vencimiento de la declaración cuando el día máximo es domingo?",
               "Cuando la fecha máxima de declarar coincide con un día festivo, ¿qué pasa con el plazo?")),
    Fact("iva-credito-tributario", IVA, "Art. 7", "qa",
         gold="Solo la diferencia entre el IVA cobrado y el IVA pagado en compras",
         distractors=("Todo el IVA cobrado en sus ventas", "La suma del IVA cobrado y el IVA pagado",
                      "El 30% del IVA cobrado"),
         key_facts=("diferencia",), distractor_facts=("todo el IVA cobrado", "suma", "30%"),
         reference="Resta del IVA que cobró en sus ventas el IVA pagado en compras respaldadas con facturas a su "
                   "nombre, y al SRI le paga solo la diferencia.",
         train=("¿Qué parte del IVA entrega al SRI un negocio que también pagó IVA en sus compras?",
                "¿Cómo funciona el crédito tributario del IVA para un negocio?"),
         dev=("Un negocio cobró IVA en sus ventas y pagó IVA en la mercadería que revende: ¿cuánto IVA entrega "
              "al SRI?",),
         test=("Si compré mercadería con factura a mi nombre y pagué IVA, ¿cuánto IVA le pago al SRI al vender?",
               "¿Qué monto de IVA paga al SRI un comerciante que usa el crédito tributario?",
               "Con el crédito tributario, ¿qué cantidad del IVA de sus ventas entrega un negocio al SRI?")),
    # --- renta.md ----------------------------------------------------------------------------------------
    Fact("renta-ejercicio-fiscal", RENTA, "Art. 1", "qa", gold="Del 1 de enero al 31 de diciembre",
         distractors=("Del 1 de abril al 31 de marzo", "Del 1 de julio al 30 de junio",
                      "Del 1 de marzo al 28 de febrero"),
         key_facts=("1 de enero", "31 de diciembre"),
         distractor_facts=("1 de abril", "31 de marzo", "1 de julio", "30 de junio", "1 de marzo", "28 de febrero"),
         reference="El ejercicio fiscal va del 1 de enero al 31 de diciembre.",
         train=("¿Qué período abarca el ejercicio fiscal del impuesto a la renta?",
                "¿Entre qué fechas va el ejercicio fiscal en Ecuador?"),
         dev=("¿Cuándo empieza y cuándo termina el ejercicio fiscal?",),
         test=("¿Qué días delimitan el año fiscal para el impuesto a la renta?",
               "¿Desde qué fecha y hasta qué fecha se suman los ingresos de un ejercicio fiscal?",
               "El impuesto a la renta se calcula por ejercicio fiscal: ¿de qué día a qué día va?")),
    Fact("renta-formulario-107", RENTA, "Art. 2", "document_only", gold="Formulario 107",
         distractors=("Formulario 103", "Formulario 104", "Formulario 101"), key_facts=("formulario 107",),
         reference="El empleador le entrega el formulario 107, con el resumen del impuesto que le retuvo.",
         dev=("¿Qué formulario entrega el empleador a su trabajador con el resumen del impuesto a la renta?",),
         test=("Trabajo en relación de dependencia con un solo empleador: ¿qué formulario me da con el resumen "
               "de mi impuesto?",
               "¿Cuál es el número del formulario que resume el impuesto a la renta retenido a un empleado?",
               "¿Con qué formulario informa el empleador al trabajador lo que le retuvo de impuesto a la renta?")),
    Fact("renta-mes-personas", RENTA, "Art. 3", "qa", gold="Marzo", distractors=("Abril", "Enero", "Diciembre"),
         key_facts=("marzo",),
         reference="Las personas naturales declaran el impuesto a la renta en marzo del año siguiente al "
                   "ejercicio fiscal.",
         train=("¿En qué mes declaran el impuesto a la renta las personas naturales?",
                "¿Cuándo presenta una persona natural su declaración anual de impuesto a la renta?"),
         dev=("¿En qué mes del año siguiente declara la renta una persona natural?",),
         test=("Soy persona natural con un negocio: ¿en qué mes presento la declaración de renta del año pasado?",
               "¿Qué mes del año tienen las personas naturales para declarar el impuesto a la renta?",
               "La declaración de impuesto a la renta de una persona natural por el año 2024, ¿en qué mes se "
               "presenta?")),
    Fact("renta-mes-sociedades", RENTA, "Art. 3", "document_only", gold="Abril",
         distractors=("Marzo", "Enero", "Junio"), key_facts=("abril",),
         reference="Las sociedades declaran el impuesto a la renta en abril.",
         dev=("¿En qué mes declaran el impuesto a la renta las sociedades?",),
         test=("Una compañía, ¿en qué mes presenta su declaración de impuesto a la renta?",
               "¿Qué mes tienen las sociedades para declarar la renta del ejercicio anterior?",
               "Las empresas constituidas como sociedades, ¿en qué mes declaran la renta?")),
    Fact("renta-plazo-digito-5", RENTA, "Art. 3", "document_only", **day_options(18, 16, 20, 10),
         reference="Con noveno dígito 5, una persona natural declara la renta hasta el día 18 de marzo.",
         dev=("Si el noveno dígito de mi cédula es 5, ¿hasta qué día de marzo puedo declarar el impuesto a la "
              "renta?",),
         test=("¿Qué día de marzo vence la declaración de renta de una persona natural con noveno dígito 5?",
               "Mi RUC tiene 5 como noveno dígito: ¿cuál es el último día de marzo para declarar la renta?",
               "Para el impuesto a la renta anual, ¿qué día es el plazo si el noveno dígito es cinco?")),
    Fact("renta-gastos-canastas", RENTA, "Art. 4", "qa", gold="En canastas familiares básicas",
         distractors=("En salarios básicos unificados", "En fracciones básicas desgravadas",
                      "En porcentajes del sueldo"),
         key_facts=("canastas familiares básicas | canasta familiar básica",),
         distractor_facts=("salarios básicos | salario básico",
                           "fracción básica desgravada | fracciones básicas desgravadas",
                           "porcentaje del sueldo | porcentajes del sueldo"),
         reference="Los límites de los gastos personales se expresan en canastas familiares básicas.",
         train=("¿En qué unidad se fijan los límites de la rebaja por gastos personales?",
                "¿Cómo se expresan los topes de los gastos personales en el impuesto a la renta?"),
         dev=("¿Con qué medida se expresan los límites de los gastos personales?",),
         test=("Los gastos personales rebajan el impuesto a la renta hasta un límite: ¿en qué se expresa ese "
               "límite?",
               "¿Qué referencia se usa para poner tope a la rebaja por gastos de vivienda, salud o educación?",
               "¿En qué unidades están los máximos de gastos personales que se pueden aprovechar?")),
    # --- rimpe.md ----------------------------------------------------------------------------------------
    Fact("rimpe-creacion", RIMPE, "Art. 1", "document_only", gold="2021", distractors=("2024", "2019", "2022"),
         key_facts=("2021",), reference="El RIMPE se creó a fines de 2021.",
         dev=("¿En qué año se creó el RIMPE?",),
         test=("¿Desde qué año existe el Régimen Simplificado para Emprendedores y Negocios Populares?",
               "¿A fines de qué año nació el régimen RIMPE?",
               "¿En qué año se creó el régimen para emprendedores y negocios populares?")),
    Fact("rimpe-limite-ingresos", RIMPE, "Art. 1", "qa", gold="USD 300.000",
         distractors=("USD 20.000", "USD 200.000", "USD 100.000"), key_facts=("USD 300.000",),
         reference="El RIMPE se aplica a quienes tuvieron ingresos brutos de hasta USD 300.000 el año anterior.",
         train=("¿Cuál es el tope de ingresos brutos anuales para estar en el RIMPE?",
                "¿Hasta qué monto de ingresos del año anterior puede un negocio acogerse al RIMPE?"),
         dev=("¿Qué ingresos brutos anuales máximos permite el régimen RIMPE?",),
         test=("Si mi negocio facturó más de cierto monto el año pasado ya no entra al RIMPE: ¿cuál es ese monto?",
               "¿Cuánto pueden tener como máximo en ingresos brutos anuales las sociedades del RIMPE?",
               "¿A partir de qué nivel de ingresos brutos del año anterior un negocio queda fuera del RIMPE?")),
    Fact("rimpe-np-limite", RIMPE, "Art. 2", "document_only", gold="USD 20.000",
         distractors=("USD 300.000", "USD 10.000", "USD 60.000"), key_facts=("USD 20.000",),
         reference="Son negocios populares las personas naturales con ingresos brutos anuales de hasta USD 20.000.",
         dev=("¿Hasta qué monto de ingresos brutos anuales se considera negocio popular?",),
         test=("Una tienda de barrio, ¿hasta cuántos dólares de ingresos brutos al año puede tener para ser "
               "negocio popular?",
               "¿Cuál es el límite de ingresos brutos anuales de un negocio popular en el RIMPE?",
               "¿Qué monto de ingresos anuales separa a los negocios populares de los emprendedores?")),
    Fact("rimpe-cuota-np", RIMPE, "Art. 2", "qa", gold="USD 60 al año",
         distractors=("USD 100 al año", "USD 30 al año", "USD 200 al año"), key_facts=("USD 60",),
         distractor_facts=("USD 100", "USD 30", "USD 200"),
         reference="Un negocio popular paga el impuesto a la renta como una cuota fija de USD 60 al año.",
         train=("¿Cuánto paga de impuesto a la renta un negocio popular del RIMPE?",
                "¿De cuánto es la cuota fija anual de los negocios populares?"),
         dev=("¿Qué cuota anual de impuesto a la renta paga un negocio popular?",),
         test=("Tengo un puesto de comida como negocio popular: ¿cuánto pago al año de impuesto a la renta?",
               "¿Cuál es el valor fijo anual que pagan los negocios populares por impuesto a la renta?",
               "En el RIMPE, ¿cuántos dólares al año paga de renta una tienda de barrio que es negocio popular?")),
    Fact("rimpe-np-comprobantes", RIMPE, "Art. 2", "document_only", gold="Notas de venta",
         distractors=("Facturas", "Comprobantes de retención", "Liquidaciones de compra"),
         key_facts=("notas de venta | nota de venta",),
         distractor_facts=("facturas | factura", "comprobantes de retención | comprobante de retención",
                           "liquidaciones de compra | liquidación de compra"),
         reference="Los negocios populares emiten notas de venta.",
         dev=("¿Qué comprobante de venta emiten los negocios populares?",),
         test=("Si mi taller es negocio popular, ¿qué tipo de comprobante entrego a mis clientes?",
               "¿Qué documento de venta emite una tienda de barrio del RIMPE clasificada como negocio popular?",
               "¿Con qué comprobante respalda sus ventas un negocio popular?")),
    Fact("rimpe-emprendedores-iva", RIMPE, "Art. 3", "qa", gold=FREQUENCIES["semestre"][0],
         distractors=("Cada mes", "Una vez al año", "No declaran IVA"), key_facts=(FREQUENCIES["semestre"][1],),
         distractor_facts=(FREQUENCIES["mes"][1], FREQUENCIES["año"][1],
                           "no declaran IVA | no presentan declaraciones de IVA"),
         reference="Los emprendedores del RIMPE declaran el IVA cada semestre.",
         train=("¿Cada cuánto declaran el IVA los emprendedores del RIMPE?",
                "¿Con qué frecuencia presenta el IVA un emprendedor del régimen RIMPE?"),
         dev=("Un emprendedor RIMPE que cobra IVA en sus facturas, ¿cada cuánto lo declara?",),
         test=("Estoy en el RIMPE como emprendedor: ¿mi declaración de IVA es cada cuánto tiempo?",
               "¿Qué periodicidad tiene la declaración de IVA de los emprendedores del RIMPE?",
               "¿Cada cuántos meses declara el IVA quien está en el RIMPE como emprendedor?")),
    Fact("rimpe-leyenda", RIMPE, "Art. 4", "document_only", gold="Contribuyente Régimen RIMPE",
         distractors=("Negocio Popular Exento", "Agente de Retención Autorizado", "Régimen General Simplificado"),
         key_facts=("Contribuyente Régimen RIMPE",),
         reference='Sus comprobantes de venta deben llevar la leyenda "Contribuyente Régimen RIMPE".',
         dev=("¿Qué leyenda deben llevar los comprobantes de venta de los contribuyentes RIMPE?",),
         test=("¿Qué frase debe aparecer en las notas de venta o facturas de un contribuyente del RIMPE?",
               "Los comprobantes de un negocio en el RIMPE deben decir una leyenda: ¿cuál?",
               "¿Con qué texto obligatorio se identifican en sus comprobantes quienes están en el RIMPE?")),
    # --- ruc.html ----------------------------------------------------------------------------------------
    Fact("ruc-digitos", RUC, "Art. 1", "qa", gold="13 dígitos", distractors=("10 dígitos", "12 dígitos", "9 dígitos"),
         key_facts=("13 dígitos | 13 cifras",),
         distractor_facts=("10 dígitos | 10 cifras", "12 dígitos | 12 cifras", "9 dígitos | 9 cifras"),
         reference="El RUC tiene 13 dígitos.",
         train=("¿Cuántos dígitos tiene el RUC?", "¿De cuántos números se compone el Registro Único de Contribuyentes?"),
         dev=("¿Cuántos dígitos forman el número de RUC?",),
         test=("¿Qué longitud, en dígitos, tiene un número de RUC?",
               "Al llenar un formulario con mi RUC, ¿cuántos dígitos debo escribir?",
               "¿Cuántas cifras tiene el RUC de una persona o sociedad?")),
    Fact("ruc-plazo-inscripcion", RUC, "Art. 2", "qa", gold="30 días", distractors=("5 días", "15 días", "60 días"),
         key_facts=("30 días",),
         reference="La inscripción en el RUC debe hacerse dentro de los 30 días siguientes al inicio de la "
                   "actividad económica.",
         train=("¿Cuánto tiempo tengo para sacar el RUC después de empezar mi negocio?",
                "¿En qué plazo hay que inscribirse en el RUC al iniciar una actividad económica?"),
         dev=("¿Dentro de cuántos días debo obtener el RUC desde que empiezo a trabajar por mi cuenta?",),
         test=("Abrí una panadería la semana pasada: ¿cuántos días tengo para inscribirme en el RUC?",
               "¿Qué plazo hay para obtener el RUC tras iniciar una actividad económica?",
               "Si empiezo a ejercer mi profesión por mi cuenta, ¿en cuántos días debo sacar el RUC?")),
    Fact("ruc-requisitos", RUC, "Art. 3", "document_only",
         gold="La cédula y un documento de la dirección, como una planilla de luz o agua",
         distractors=("Solo la cédula", "La cédula y el formulario 107", "El pasaporte y una carta del empleador"),
         key_facts=("cédula", "planilla de luz o agua | planilla de luz | planilla de agua | "
                              "documento que respalde la dirección"),
         distractor_facts=("solo la cédula", "formulario 107", "pasaporte", "carta del empleador"),
         reference="Necesita su cédula y un documento que respalde la dirección donde realizará la actividad, por "
                   "ejemplo una planilla de luz o agua.",
         dev=("¿Qué documentos necesita una persona natural para sacar el RUC?",),
         test=("Voy a inscribirme en el RUC en una oficina del SRI: ¿qué debo llevar?",
               "¿Qué requisitos pide el SRI a una persona natural para obtener el RUC?",
               "¿Qué documentos hay que presentar para inscribirse en el RUC como persona natural?")),
    Fact("ruc-actualizacion", RUC, "Art. 4", "document_only", gold="30 días",
         distractors=("5 días", "15 días", "60 días"), key_facts=("30 días",),
         reference="Los cambios de dirección, de actividad o de datos de contacto se actualizan en el RUC dentro "
                   "de los 30 días siguientes.",
         dev=("¿En cuántos días hay que actualizar el RUC si cambio de dirección?",),
         test=("Cambié de actividad económica: ¿qué plazo tengo para actualizarla en el RUC?",
               "¿Dentro de cuántos días se deben actualizar en el RUC los datos de contacto que cambiaron?",
               "Si mi negocio se muda, ¿cuánto tiempo tengo para registrar la nueva dirección en el RUC?")),
    # --- retenciones.pdf -----------------------------------------------------------------------------------
    Fact("ret-comprobante-plazo", RET, "Art. 3", "qa", gold="5 días", distractors=("30 días", "10 días", "15 días"),
         key_facts=("5 días",),
         reference="El agente de retención entrega el comprobante de retención dentro de los cinco días "
                   "siguientes a recibir la factura.",
         train=("¿En qué plazo debe entregarse el comprobante de retención?",
                "¿Cuántos días tiene el agente de retención para dar el comprobante al proveedor?"),
         dev=("¿Dentro de cuántos días de recibida la factura se entrega el comprobante de retención?",),
         test=("Recibí la factura de un proveedor y debo retenerle: ¿cuántos días tengo para entregarle el "
               "comprobante?",
               "¿Qué plazo tiene un agente de retención para emitir el comprobante desde que le llega la factura?",
               "Como proveedor, ¿en cuántos días debería recibir el comprobante de retención de mi cliente?")),
    Fact("ret-renta-honorarios", RET, "Art. 4", "qa", gold="10%", distractors=("100%", "30%", "12%"),
         key_facts=("10%",),
         reference="Sobre los honorarios profesionales pagados a personas naturales se retiene el 10% de impuesto "
                   "a la renta.",
         train=("¿Qué porcentaje de impuesto a la renta se retiene sobre honorarios profesionales de personas "
                "naturales?",
                "¿Cuánto se retiene de renta cuando se pagan honorarios a un profesional persona natural?"),
         dev=("¿Cuál es la retención de renta, en porcentaje, para honorarios pagados a una persona natural?",),
         test=("Si pago honorarios a una abogada que trabaja por su cuenta, ¿qué porcentaje le retengo de "
               "impuesto a la renta?",
               "¿Qué retención en la fuente del impuesto a la renta corresponde a los honorarios de un "
               "profesional independiente?",
               "Al pagar a un médico persona natural por sus honorarios, ¿qué porcentaje de renta se le retiene?")),
    Fact("ret-iva-bienes", RET, "Art. 5", "qa", gold="30%", distractors=("70%", "100%", "10%"), key_facts=("30%",),
         reference="En la compra de bienes se retiene el 30% del IVA de la factura.",
         train=("¿Qué porcentaje del IVA se retiene en la compra de bienes?",
                "Al comprar bienes como agente de retención, ¿cuánto del IVA de la factura retengo?"),
         dev=("¿Cuál es el porcentaje de retención de IVA en compras de bienes?",),
         test=("Mi empresa compra mercadería a un proveedor: ¿qué parte del IVA de la factura debe retener?",
               "¿Cuánto IVA, en porcentaje del impuesto facturado, se retiene cuando se adquieren bienes?",
               "En una compra de bienes, ¿qué porcentaje del IVA queda retenido por el comprador?")),
    Fact("ret-iva-servicios", RET, "Art. 5", "document_only", gold="70%", distractors=("30%", "100%", "10%"),
         key_facts=("70%",), reference="En la contratación de servicios se retiene el 70% del IVA de la factura.",
         dev=("¿Qué porcentaje del IVA se retiene al contratar servicios?",),
         test=("Contraté un servicio de limpieza para mi empresa: ¿cuánto del IVA de la factura retengo?",
               "¿Cuál es la retención de IVA, en porcentaje, en la contratación de servicios?",
               "Un agente de retención que paga un servicio, ¿qué parte del IVA facturado retiene?")),
    Fact("ret-ejemplo-servicios", RET, "Art. 5", "document_only", gold="USD 21",
         distractors=("USD 9", "USD 140", "USD 3"), key_facts=("USD 21",),
         reference="Se retiene el 70% del IVA de un servicio: de USD 30 de IVA, el agente retiene USD 21.",
         dev=("En una factura de servicios de USD 200 con USD 30 de IVA, ¿cuánto IVA retiene el agente de "
              "retención?",),
         test=("Un agente de retención recibe una factura por servicios de USD 200 más USD 30 de IVA: ¿qué valor "
               "de IVA retiene?",
               "¿Cuánto IVA se retiene en una factura de servicios de USD 200 cuyo IVA es USD 30?",
               "Pago un servicio de USD 200 con IVA de USD 30: ¿cuántos dólares de ese IVA debo retener?")),
    Fact("ret-formulario-renta", RET, "Art. 6", "qa", gold="Formulario 103",
         distractors=("Formulario 104", "Formulario 107", "Formulario 101"), key_facts=("formulario 103",),
         reference="Las retenciones de impuesto a la renta se declaran en el formulario 103.",
         train=("¿En qué formulario se declaran las retenciones de renta?",
                "¿Qué formulario usa un agente de retención para declarar lo retenido de impuesto a la renta?"),
         dev=("¿Cuál es el formulario de las retenciones en la fuente del impuesto a la renta?",),
         test=("Retuve impuesto a la renta a mis proveedores este mes: ¿en qué formulario lo declaro?",
               "¿Con qué número de formulario se presentan las retenciones de renta?",
               "Para declarar y pagar lo retenido por impuesto a la renta, ¿qué formulario corresponde?")),
    Fact("ret-formulario-iva", RET, "Art. 6", "document_only", gold="Formulario 104",
         distractors=("Formulario 103", "Formulario 107", "Formulario 101"), key_facts=("formulario 104",),
         reference="Las retenciones de IVA se declaran en el formulario 104.",
         dev=("¿En qué formulario se declaran las retenciones de IVA?",),
         test=("Retuve IVA a un proveedor: ¿en qué formulario declaro esa retención?",
               "¿Qué número de formulario se usa para las retenciones del IVA?",
               "Un agente de retención, ¿con qué formulario declara lo que retuvo de IVA?")),
    # --- worked examples: the documents' rules applied to numbers that are not in them ------------------------
    Fact("we-iva-15", IVA, "Art. 2", "qa", kind="worked_example",
         train=(worked("Un producto gravado cuesta USD 560 antes de impuestos. ¿Cuánto IVA se paga con la tarifa "
                       "general?", 560, 0.15, (0.12, 1.15, 0.10),
                       "Con la tarifa general del 15%, el IVA de USD 560 es {gold}."),
                worked("Vendo un artículo gravado en USD 180 sin impuestos: ¿cuánto IVA debo cobrar?",
                       180, 0.15, (0.12, 1.15, 0.10), "Con la tarifa general del 15%, el IVA de USD 180 es {gold}.")),
         dev=(worked("Si un bien gravado vale USD 260 antes de impuestos, ¿cuánto es el IVA con la tarifa vigente?",
                     260, 0.15, (0.12, 1.15, 0.10), "Con la tarifa general del 15%, el IVA de USD 260 es {gold}."),),
         test=(worked("Un producto cuesta USD 340 antes de impuestos: ¿cuánto IVA se paga?",
                      340, 0.15, (0.12, 1.15, 0.10), "Con la tarifa general del 15%, el IVA de USD 340 es {gold}."),
               worked("Una computadora gravada cuesta USD 1.240 sin IVA. ¿Cuánto IVA se le suma con la tarifa "
                      "general?", 1240, 0.15, (0.12, 1.15, 0.10),
                      "Con la tarifa general del 15%, el IVA de USD 1.240 es {gold}."),
               worked("¿Cuánto IVA corresponde a una compra gravada de USD 36 antes de impuestos?",
                      36, 0.15, (0.12, 1.15, 0.10), "Con la tarifa general del 15%, el IVA de USD 36 es {gold}."))),
    Fact("we-ret-iva-bienes", RET, "Art. 5", "document_only", kind="worked_example",
         dev=(worked("Mi empresa compra bienes y la factura trae USD 90 de IVA: ¿cuánto IVA retengo?",
                     90, 0.30, (0.70, 1.0, 0.10), "En compras de bienes se retiene el 30% del IVA: de USD 90, {gold}."),),
         test=(worked("Como agente de retención compro mercadería cuya factura tiene un IVA de USD 45. ¿Cuánto de "
                      "ese IVA retengo?", 45, 0.30, (0.70, 1.0, 0.10),
                      "En compras de bienes se retiene el 30% del IVA: de USD 45, {gold}."),
               worked("En la compra de bienes con IVA facturado de USD 150, ¿qué valor de IVA se retiene?",
                      150, 0.30, (0.70, 1.0, 0.10), "En compras de bienes se retiene el 30% del IVA: de USD 150, {gold}."),
               worked("Una sociedad compra bienes y el IVA de la factura es USD 66: ¿cuántos dólares de IVA retiene?",
                      66, 0.30, (0.70, 1.0, 0.10), "En compras de bienes se retiene el 30% del IVA: de USD 66, {gold}."))),
    Fact("we-ret-renta-honorarios", RET, "Art. 4", "qa", kind="worked_example",
         train=(worked("Pago USD 470 de honorarios a un contador que es persona natural: ¿cuánto le retengo de "
                       "impuesto a la renta?", 470, 0.10, (0.30, 0.15, 0.12),
                       "Sobre honorarios a personas naturales se retiene el 10% de renta: de USD 470, {gold}."),
                worked("¿Cuánta retención de renta corresponde a honorarios profesionales de USD 920 pagados a una "
                       "persona natural?", 920, 0.10, (0.30, 0.15, 0.12),
                       "Sobre honorarios a personas naturales se retiene el 10% de renta: de USD 920, {gold}.")),
         dev=(worked("Una empresa paga USD 800 de honorarios a una arquitecta independiente (persona natural). "
                     "¿Cuánto retiene de impuesto a la renta?", 800, 0.10, (0.30, 0.15, 0.12),
                     "Sobre honorarios a personas naturales se retiene el 10% de renta: de USD 800, {gold}."),),
         test=(worked("Si pago USD 1.500 en honorarios profesionales a una persona natural, ¿qué valor retengo por "
                      "impuesto a la renta?", 1500, 0.10, (0.30, 0.15, 0.12),
                      "Sobre honorarios a personas naturales se retiene el 10% de renta: de USD 1.500, {gold}."),
               worked("¿Cuántos dólares de impuesto a la renta se retienen sobre honorarios de USD 350 pagados a un "
                      "profesional persona natural?", 350, 0.10, (0.30, 0.15, 0.12),
                      "Sobre honorarios a personas naturales se retiene el 10% de renta: de USD 350, {gold}."),
               worked("Un abogado persona natural factura USD 2.700 de honorarios: ¿cuánto le retiene de renta "
                      "quien le paga?", 2700, 0.10, (0.30, 0.15, 0.12),
                      "Sobre honorarios a personas naturales se retiene el 10% de renta: de USD 2.700, {gold}."))),
    Fact("we-plazo-iva", IVA, "Art. 6", "document_only", kind="worked_example",
         dev=(deadline("Mi RUC tiene 6 como noveno dígito. ¿Hasta qué fecha debo declarar el IVA de julio?",
                       20, "julio", "agosto",
                       "Con noveno dígito 6 el plazo es el día 20 del mes siguiente: el IVA de julio se declara "
                       "hasta el {gold}."),),
         test=(deadline("El noveno dígito de mi RUC es 2: ¿cuál es la fecha máxima para declarar el IVA de octubre?",
                        12, "octubre", "noviembre",
                        "Con noveno dígito 2 el plazo es el día 12 del mes siguiente: el IVA de octubre se declara "
                        "hasta el {gold}."),
               deadline("¿Hasta qué fecha se declara el IVA de enero si el noveno dígito del RUC es 8?",
                        24, "enero", "febrero",
                        "Con noveno dígito 8 el plazo es el día 24 del mes siguiente: el IVA de enero se declara "
                        "hasta el {gold}."),
               deadline("Con noveno dígito 9, ¿qué día y mes vence la declaración del IVA de mayo?",
                        26, "mayo", "junio",
                        "Con noveno dígito 9 el plazo es el día 26 del mes siguiente: el IVA de mayo se declara "
                        "hasta el {gold}."))),
]


def unanswerable(fid: str, file: str, article: str, options: tuple[str, ...], reference: str, dev: str,
                 test: tuple[str, ...]) -> Fact:
    """A question on the documents' topics whose answer they do not give: the gold is the abstention."""
    return Fact(fid, file, article, None, dev=(dev,), test=test, distractors=options, reference=reference,
                answerable=False)


USD_FINES = ("USD 30", "USD 60", "USD 100", "USD 200")

UNANSWERABLE = [
    unanswerable("un-multa-iva", IVA, "Art. 5", USD_FINES,
                 "Los documentos no lo indican: las guías no dan el valor de la multa por declarar tarde el IVA.",
                 "¿Qué monto se paga de multa si declaro el IVA después del plazo?",
                 ("¿Cuánto es la multa por presentar tarde la declaración del IVA?",
                  "Me atrasé una semana en declarar el IVA mensual: ¿de cuánto es la multa?",
                  "¿Cuál es el valor de la sanción por no presentar a tiempo la declaración mensual del IVA?")),
    unanswerable("un-interes-mora", RENTA, "Art. 5", ("10%", "12%", "15%", "30%"),
                 "Los documentos no lo indican: mencionan intereses por mora, pero no su tasa.",
                 "¿Qué tasa de interés por mora se cobra al declarar tarde el impuesto a la renta?",
                 ("¿Qué porcentaje de interés por mora se aplica a un impuesto pagado fuera de plazo?",
                  "Si declaro la renta tarde, ¿a qué tasa anual crecen los intereses por mora?",
                  "¿Cuál es la tasa de los intereses de mora tributaria?")),
    unanswerable("un-fraccion-basica", RENTA, "Art. 2", ("USD 20.000", "USD 10.000", "USD 30.000", "USD 300.000"),
                 "Los documentos no lo indican: solo dicen que el SRI publica cada año la fracción básica "
                 "desgravada.",
                 "¿Cuál es el valor de la fracción básica desgravada del impuesto a la renta?",
                 ("¿Cuántos dólares de ingresos anuales obligan a una persona natural a declarar el impuesto a la "
                  "renta?",
                  "¿Cuántos dólares suma la fracción básica desgravada este año?",
                  "¿Hasta qué ingreso anual una persona no paga impuesto a la renta?")),
    unanswerable("un-canastas-limite", RENTA, "Art. 4", ("2 canastas", "5 canastas", "7 canastas", "10 canastas"),
                 "Los documentos no lo indican: dicen que los límites se expresan en canastas familiares básicas, "
                 "sin decir cuántas.",
                 "¿Cuántas canastas familiares básicas es el límite de los gastos personales?",
                 ("¿Hasta cuántas canastas básicas puedo deducir en gastos personales?",
                  "¿Qué número de canastas familiares básicas fija el tope de la rebaja por gastos personales?",
                  "El límite de gastos personales, ¿equivale a cuántas canastas familiares básicas?")),
    unanswerable("un-valor-canasta", RENTA, "Art. 4", ("USD 200", "USD 300", "USD 600", "USD 800"),
                 "Los documentos no lo indican: no dan el valor de la canasta familiar básica.",
                 "¿Cuánto vale la canasta familiar básica que se usa para los gastos personales?",
                 ("¿Cuál es el valor en dólares de una canasta familiar básica?",
                  "¿A cuánto equivale hoy la canasta familiar básica?",
                  "¿Qué monto tiene la canasta básica con la que se calculan los límites de gastos personales?")),
    unanswerable("un-ret-renta-bienes", RET, "Art. 4", ("1%", "2%", "10%", "30%"),
                 "Los documentos no lo indican: solo dan el porcentaje de retención de renta de los honorarios "
                 "profesionales.",
                 "¿Qué porcentaje de retención de renta se aplica en la compra de bienes?",
                 ("Compro mercadería a un proveedor: ¿qué porcentaje le retengo de impuesto a la renta?",
                  "¿Cuánto se retiene de renta en la compra de bienes muebles?",
                  "¿Cuál es la retención en la fuente del impuesto a la renta para adquisiciones de bienes?")),
    unanswerable("un-ret-renta-arriendo", RET, "Art. 4", ("8%", "10%", "30%", "100%"),
                 "Los documentos no lo indican: para el arriendo solo dan la retención del IVA, no la de renta.",
                 "¿Qué porcentaje de retención de impuesto a la renta se aplica al arriendo de inmuebles?",
                 ("Pago arriendo de una oficina a su dueño: ¿cuánto le retengo de impuesto a la renta?",
                  "¿Cuál es el porcentaje de retención de renta sobre arriendos pagados a personas naturales?",
                  "¿Qué retención de renta corresponde a un canon de arrendamiento?")),
    unanswerable("un-rimpe-tabla", RIMPE, "Art. 3", ("1%", "2%", "10%", "15%"),
                 "Los documentos no lo indican: dicen que el SRI publica la tabla progresiva, pero no sus "
                 "porcentajes.",
                 "¿Qué porcentaje de impuesto a la renta paga un emprendedor RIMPE con ingresos brutos de "
                 "USD 50.000?",
                 ("¿Cuál es la tarifa de renta que aplica un emprendedor del RIMPE sobre sus ingresos brutos?",
                  "Un emprendedor RIMPE que facturó USD 120.000, ¿qué porcentaje paga de impuesto a la renta?",
                  "¿Qué porcentajes tiene la tabla progresiva de los emprendedores del RIMPE?")),
    unanswerable("un-renta-tarifa-maxima", RENTA, "Art. 1", ("15%", "25%", "30%", "37%"),
                 "Los documentos no lo indican: dicen que la tabla es progresiva, pero no dan sus porcentajes.",
                 "¿Cuál es el porcentaje más alto de la tabla del impuesto a la renta de personas naturales?",
                 ("¿Qué tarifa máxima de impuesto a la renta paga una persona natural con ingresos altos?",
                  "En la tabla progresiva del impuesto a la renta, ¿cuál es el último porcentaje?",
                  "¿Qué porcentaje de impuesto a la renta se aplica en el tramo más alto de ingresos?")),
    unanswerable("un-iva-semestral-meses", IVA, "Art. 5",
                 ("En julio y enero", "En junio y diciembre", "En marzo y septiembre", "En abril y octubre"),
                 "Los documentos no lo indican: dicen que hay declaración semestral, pero no en qué meses se "
                 "presenta.",
                 "¿En qué meses se presenta la declaración semestral del IVA?",
                 ("Si declaro el IVA cada semestre, ¿en qué meses me toca presentarlo?",
                  "¿Cuáles son los meses de declaración para quienes declaran el IVA semestralmente?",
                  "¿En qué mes se declara el IVA del primer semestre?")),
    unanswerable("un-multa-ruc", RUC, "Art. 4", USD_FINES,
                 "Los documentos no lo indican: dan el plazo para actualizar el RUC, pero no la multa por "
                 "incumplirlo.",
                 "¿Qué multa se paga por no actualizar el RUC a tiempo?",
                 ("Me cambié de dirección y no lo actualicé en el RUC a tiempo: ¿cuánto es la multa?",
                  "¿De cuánto es la sanción por no actualizar los datos del RUC dentro del plazo?",
                  "¿Cuál es la multa por inscribirse tarde en el RUC?")),
    unanswerable("un-anios-facturas", RENTA, "Art. 4", ("3 años", "5 años", "7 años", "10 años"),
                 "Los documentos no lo indican: piden conservar las facturas, pero no dicen por cuántos años.",
                 "¿Cuántos años hay que guardar las facturas de los gastos personales?",
                 ("¿Por cuánto tiempo debo conservar las facturas que respaldan mis gastos personales?",
                  "¿Durante cuántos años se deben archivar las facturas a nombre propio?",
                  "¿Cuántos años tiene que guardar un contribuyente sus comprobantes de venta?")),
    unanswerable("un-contabilidad", RET, "Art. 2", ("USD 300.000", "USD 20.000", "USD 100.000", "USD 200.000"),
                 "Los documentos no lo indican: mencionan a las personas obligadas a llevar contabilidad, pero no "
                 "desde qué ingresos lo están.",
                 "¿A partir de qué ingresos anuales una persona natural está obligada a llevar contabilidad?",
                 ("¿Cuántos dólares de ingresos al año obligan a una persona a llevar contabilidad?",
                  "¿Qué monto de ingresos hace que una persona natural deba llevar contabilidad?",
                  "¿Desde qué nivel de ventas anuales el negocio de una persona natural debe llevar contabilidad?")),
    unanswerable("un-ret-honorarios-sociedades", RET, "Art. 4", ("2%", "10%", "30%", "100%"),
                 "Los documentos no lo indican: solo dan la retención de renta de los honorarios pagados a "
                 "personas naturales.",
                 "¿Qué porcentaje de retención de renta se aplica a los honorarios pagados a una sociedad?",
                 ("Si contrato a una firma de abogados constituida como compañía, ¿cuánto le retengo de impuesto "
                  "a la renta?",
                  "¿Cuál es la retención de renta sobre servicios profesionales que factura una sociedad?",
                  "¿Qué porcentaje de renta se retiene a una empresa consultora por sus honorarios?")),
    unanswerable("un-costo-ruc", RUC, "Art. 3", ("USD 10", "USD 15", "USD 20", "USD 30"),
                 "Los documentos no lo indican: explican cómo sacar el RUC, pero no si tiene costo.",
                 "¿Cuánto cuesta sacar el RUC?",
                 ("¿Qué valor se paga al SRI por inscribirse en el RUC?",
                  "¿Cuánto se paga por obtener el RUC en una oficina del SRI?",
                  "¿Cuántos dólares cuesta el trámite de inscripción en el RUC?")),
    unanswerable("un-devolucion-iva", IVA, "Art. 7", ("15 días", "30 días", "60 días", "90 días"),
                 "Los documentos no lo indican: no tratan la devolución del IVA.",
                 "¿En cuántos días devuelve el SRI el IVA a las personas adultas mayores?",
                 ("¿Cuánto tarda el SRI en devolver el IVA pagado por una persona con discapacidad?",
                  "¿En qué plazo se devuelve el IVA que se pidió en devolución?",
                  "¿Cuántos días tiene el SRI para responder una solicitud de devolución de IVA?")),
]


def gold_position(item_id: str, n: int) -> int:
    """A position in 0..n-1 fixed by the id: golds spread over A-D, the same on every run."""
    return int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16) % n


def items_of(fact: Fact) -> list[dict]:
    rows = []
    for split in ("train", "dev", "test"):
        for number, entry in enumerate(getattr(fact, split), start=1):
            p = entry if isinstance(entry, Phrasing) else Phrasing(entry)
            item_id = f"{fact.id}.{split}.{number}"
            distractors = list(p.distractors or fact.distractors)
            if fact.answerable:
                gold = p.gold or fact.gold
                options = distractors[:]
                options.insert(gold_position(item_id, SUBSTANTIVE_OPTIONS), gold)
                distractor_facts = list(fact.distractor_facts or distractors) if p.distractors is None else distractors
            else:
                options, distractor_facts = distractors[:], distractors[:]
            assert len(options) == SUBSTANTIVE_OPTIONS, item_id
            options.append(ABSTAIN_OPTION)
            rows.append({
                "id": item_id, "fact_id": fact.id, "split": split, "answerable": fact.answerable,
                "source": {"file": fact.file, "article": fact.article}, "question": p.question,
                "options": options,
                "gold": options.index(p.gold or fact.gold) if fact.answerable else len(options) - 1,
                "reference": p.reference or fact.reference, "key_facts": list(p.key_facts or fact.key_facts),
                "distractor_facts": distractor_facts, "kind": fact.kind, "group": fact.group,
            })
    return rows


def build_items() -> list[dict]:
    return [row for fact in FACTS + UNANSWERABLE for row in items_of(fact)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "examples/exams/leyes.jsonl")
    args = parser.parse_args()
    print(write_exam(args.out, build_items()))


if __name__ == "__main__":
    main()
