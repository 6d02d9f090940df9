"""Write examples/docs/retenciones.pdf: an illustrative three-page Spanish guide on tax withholding.

The text is our own, written from public facts about Ecuador's "retenciones en la fuente"; the PDF has
a real text layer and page numbers so `amauta data build-qa` and `amauta rag index` can cite pages.
Run it again after editing the text:

    .venv/bin/python scripts/make_sample_pdf.py [--out examples/docs/retenciones.pdf]
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

TITLE = "Guía ilustrativa de las retenciones en la fuente"
NOTE = ("Ilustrativo, no es asesoría legal. Texto educativo redactado con palabras propias a partir de "
        "información pública del SRI; los porcentajes cambian por resolución, verifíquelos en www.sri.gob.ec.")

# One list per page: (heading or None, article text). Each chapter starts a new page.
PAGES = [
    [
        ("CAPÍTULO I", None),
        ("DE LOS AGENTES DE RETENCIÓN", None),
        (None, "Art. 1.- Qué es la retención en la fuente. Cuando un comprador paga a su proveedor, en ciertos "
               "casos debe quedarse con una parte del impuesto y entregarla directamente al SRI. Esa parte se "
               "llama retención en la fuente. Para el proveedor no es una pérdida: el valor retenido es un "
               "crédito tributario que descuenta en su propia declaración."),
        (None, "Art. 2.- Quiénes retienen. Actúan como agentes de retención las sociedades, las personas "
               "naturales obligadas a llevar contabilidad, las entidades del sector público y las personas "
               "que el SRI designe expresamente. Los contribuyentes del régimen RIMPE, por regla general, no "
               "retienen."),
        (None, "Art. 3.- Comprobante de retención. El agente de retención debe entregar el comprobante de "
               "retención dentro de los cinco días siguientes a la recepción de la factura. El proveedor "
               "debe guardarlo, porque lo necesita para usar el valor retenido como crédito tributario."),
    ],
    [
        ("CAPÍTULO II", None),
        ("DE LOS PORCENTAJES", None),
        (None, "Art. 4.- Retención del impuesto a la renta. Los porcentajes de retención de renta los fija el "
               "SRI mediante resolución y dependen del tipo de pago. Por ejemplo, sobre los honorarios "
               "profesionales pagados a personas naturales se retiene el 10%. En el trabajo en relación de "
               "dependencia el empleador retiene cada mes la parte proporcional del impuesto anual."),
        (None, "Art. 5.- Retención del IVA. Sobre el IVA de la factura se retiene el 30% en la compra de "
               "bienes, el 70% en la contratación de servicios y el 100% en los honorarios profesionales y en "
               "el arriendo de inmuebles pagados a personas naturales. Por ejemplo, en una factura de "
               "servicios de USD 200 con IVA de USD 30, el agente retiene USD 21 de IVA."),
    ],
    [
        ("CAPÍTULO III", None),
        ("DE LA DECLARACIÓN", None),
        (None, "Art. 6.- Declaración de las retenciones. Los agentes de retención declaran y pagan cada mes lo "
               "retenido: las retenciones de renta en el formulario 103 y las de IVA en el formulario 104. "
               "El plazo vence en el mes siguiente, en el día que corresponde al noveno dígito de su RUC, "
               "igual que la declaración mensual del IVA."),
    ],
]


def font_path() -> Path:
    """DejaVu Sans from matplotlib's package: a Unicode TTF, so accents and ñ render and extract."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def make_pdf(out: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_title(TITLE)
    pdf.set_author("Amauta (ejemplo educativo)")
    # A fixed date keeps the committed file byte-identical when the script is rerun.
    pdf.set_creation_date(datetime(2025, 1, 1, tzinfo=timezone.utc))
    pdf.add_font("DejaVu", "", str(font_path()))
    pdf.set_auto_page_break(auto=True, margin=20)
    for number, page in enumerate(PAGES, start=1):
        pdf.add_page()
        if number == 1:
            pdf.set_font("DejaVu", size=15)
            pdf.multi_cell(0, 8, TITLE, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
            pdf.set_font("DejaVu", size=9)
            pdf.multi_cell(0, 5, NOTE, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
        for heading, text in page:
            if heading:
                pdf.set_font("DejaVu", size=12)
                pdf.multi_cell(0, 7, heading, align="L", new_x="LMARGIN", new_y="NEXT")
            else:
                pdf.set_font("DejaVu", size=11)
                pdf.ln(2)
                pdf.multi_cell(0, 6, text, align="L", new_x="LMARGIN", new_y="NEXT")
        # The page number sits inside the bottom margin: switch auto page breaks off while writing it.
        pdf.set_auto_page_break(auto=False)
        pdf.set_y(-15)
        pdf.set_font("DejaVu", size=8)
        pdf.cell(0, 10, f"Página {number}", align="C")
        pdf.set_auto_page_break(auto=True, margin=20)
    out.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "examples/docs/retenciones.pdf")
    args = parser.parse_args()
    print(make_pdf(args.out))


if __name__ == "__main__":
    main()
