"""Command-line options derived from a stage's pydantic config: a field's name, type, default and help live
in one place, the config class.

TRL hands its dataclass configs to `HfArgumentParser`, and litgpt's CLI reads typed arguments; Amauta does
the same with typer. `config_options(Config)` decorates a command function and gives it one option per
field of `Config` that a flag can carry:

- `batch_size: int` → `--batch-size N`; the field's `Field(description=…)` is the option's help and its
  default is shown in `--help`;
- a bool → `--x/--no-x`; a `Literal` → its choices; a list → a comma list (`--candidates a,b`), or a
  repeatable flag, or positional arguments, as the command declares;
- `--config/-c FILE.yaml`: the file's keys first, the flags over them;
- `--set key.sub=VALUE` (repeatable, values read as YAML) when the config has nested sections, which no
  flag reaches otherwise; it wins over the file and the flags.

A flag left out is None ("not given"), so a value from the file stays. Short and renamed spellings are
declared per command, as a mapping from the field (dotted for a nested one) to its spellings:

    @eval_app.command("belebele")
    @config_options(BelebeleConfig, {"model": "-m", "out": "-o", "shots": "-k"})
    def belebele_command(config: ConfigArgs, progress: bool = PROGRESS) -> None:
        cfg = config.load()          # a validated BelebeleConfig

The command's own parameters (`--progress`, `--threads`, `--overwrite`) are declared as usual, before or
after the `ConfigArgs` one: --help lists them in that place around the config's options.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from rich.markup import escape

from amauta.core.config import parse_set, read_yaml, set_dotted, validate_config
from amauta.core.errors import AmautaError

SCALARS = (str, int, float, bool, Path)

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="YAML with the config's keys (flags override it).")


@dataclass(frozen=True)
class Flag:
    """How one config field is spelt on the command line when `--field-name` alone is not what it takes.

    names: its spellings, e.g. ("-m",) or ("--output-dir", "--out", "-o"); without a `--long` one the
        field's own `--field-name` comes first.
    off: a bool's off switch (default `--no-field-name`).
    argument: a positional argument (a list field takes many: `DOCS...`) instead of an option.
    repeat: a list field as a repeatable flag (`--stop a --stop b`) instead of a comma list.
    type: parse the text as this type instead of the field's (e.g. `str`, where the command checks the
        value itself with a better message than a list of choices).
    """

    names: tuple[str, ...] = ()
    off: str | None = None
    argument: bool = False
    repeat: bool = False
    type: Any = None


# What a command may say about a field: spellings ("-m", or a tuple), a Flag, or None for no flag at all.
FlagSpec = str | tuple[str, ...] | Flag | None


@dataclass
class ConfigArgs:
    """What the command line said about a config: its YAML file and the keys its flags set.

    cls: the config class.
    path: the `--config` file, or None.
    values: dotted key → value for every flag given (and every `--set`), in the order they apply.
    """

    cls: type[BaseModel]
    path: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        """The file's mapping with the flags' values set on it (not validated; a None value keeps the file's)."""
        data = read_yaml(self.path) if self.path is not None else {}
        for dotted, value in self.values.items():
            if value is not None:
                set_dotted(data, dotted, value)
        return data

    def load(self, missing: dict[str, str] | None = None) -> Any:
        """The validated config: the file, the flags over it; one clear line for a bad or missing value.

        missing: key → the error to give when neither a flag nor (without a file) anything sets it,
            e.g. {"index": "no index name given; add --index NAME"}.
        """
        data = self.data()
        for key, message in (missing or {}).items():
            if self.path is None and key not in data:
                raise AmautaError(message)
        return validate_config(self.cls, data, source=str(self.path) if self.path is not None else "command line")


@dataclass
class _Field:
    """One config field that has a command-line parameter."""

    key: str  # dotted path in the config, e.g. "optimizer.lr"
    param: inspect.Parameter
    convert: Callable[[Any], Any]


def config_options(cls: type[BaseModel], flags: dict[str, FlagSpec] | None = None, *,
                   config: Any = CONFIG_OPTION, show_defaults: bool | str = True) -> Callable[[Callable], Callable]:
    """A decorator giving a typer command one parameter per field of `cls`, plus `--config` and `--set`.

    The decorated function takes a `ConfigArgs` parameter (any name) and its own parameters; those before it
    come first in --help, those after it after the config's.
    flags: field (dotted for a nested one) → its spellings, a `Flag`, or None to leave it off the command
        line. A nested field has a flag only when it is named here; the rest are reachable with `--set`.
    config: the parameter that names the YAML file (a typer Option or Argument), or None for none.
    show_defaults: show each field's default in --help; or, where the defaults come from elsewhere, one
        text to show for all (e.g. "the model profile's").
    """
    flags = flags or {}
    unknown = [key for key in flags if _field_info(cls, key) is None]
    if unknown:
        raise ValueError(f"{cls.__name__} has no field {', '.join(unknown)}")
    fields = [_cli_field(key, info, flags.get(key), show_defaults)
              for key, info in _flag_fields(cls, flags)]
    nested = [name for name, info in cls.model_fields.items() if _flag_type(info.annotation) is None]

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func, eval_str=True)
        target = next((p.name for p in signature.parameters.values() if p.annotation is ConfigArgs), None)
        if target is None:
            raise TypeError(f"{func.__name__} needs a parameter annotated ConfigArgs")
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()]
        at = [p.name for p in own].index(target)
        before, after = own[:at], own[at + 1:]  # the command's own options, around the config's
        extra = []
        if config is not None:
            extra.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=config,
                                           annotation=Path | None))
        if nested:
            sets = typer.Option(None, "--set", metavar="KEY=VALUE", help=_set_help(cls, nested))
            extra.append(inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=sets,
                                           annotation=list[str] | None))
        params = before + [f.param for f in fields] + extra + after
        names = [p.name for p in params]
        clash = {name for name in names if names.count(name) > 1}
        if clash:
            raise TypeError(f"{func.__name__}: parameters {sorted(clash)} clash with {cls.__name__}'s fields")

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            args = ConfigArgs(cls, kwargs.pop("config", None) if config is not None else None)
            for f in fields:
                value = kwargs.pop(f.param.name)
                if value is not None and value != [] and value != ():
                    args.values[f.key] = f.convert(value)
            args.values.update(parse_set(kwargs.pop("set_", None) or []))
            return func(**{target: args}, **kwargs)

        del command.__wrapped__  # typer reads the signature below, not the function's
        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def _field_info(cls: type[BaseModel], key: str) -> FieldInfo | None:
    """The FieldInfo at dotted `key` in `cls` (None when there is none)."""
    model: Any = cls
    info = None
    for part in key.split("."):
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        info = fields[part]
        model = info.annotation
    return info


def _flag_fields(cls: type[BaseModel], flags: dict[str, FlagSpec]) -> list[tuple[str, FieldInfo]]:
    """(key, info) of every field that gets a flag: the top-level ones a flag can carry, then the nested
    ones the command names, minus those it maps to None."""
    chosen = [(name, info) for name, info in cls.model_fields.items()
              if _flag_type(info.annotation) is not None]
    chosen += [(key, _field_info(cls, key)) for key in flags if "." in key]
    return [(key, info) for key, info in chosen if not (key in flags and flags[key] is None)]


def _flag_type(annotation: Any) -> Any:
    """The type a flag's text is parsed as for a field of this type; None when a flag cannot carry it
    (a nested section, a mapping, a tuple)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _flag_type(args[0])
        # `int | Literal["auto"]`: the text goes to pydantic, which reads "8" as 8 and keeps "auto".
        return str if all(_flag_type(a) is not None for a in args) else None
    if origin is Literal:
        return annotation
    if origin is list:
        inner = _flag_type(typing.get_args(annotation)[0])
        if typing.get_origin(inner) is Literal:
            return list[str]  # pydantic checks each item against the choices
        return list[inner] if inner in SCALARS else None
    return annotation if annotation in SCALARS else None


def _spelling(key: str, spec: FlagSpec) -> Flag:
    """The `Flag` a command's mapping value stands for."""
    if isinstance(spec, Flag):
        return spec
    if isinstance(spec, str):
        return Flag(names=(spec,))
    return Flag(names=tuple(spec or ()))


def _cli_field(key: str, info: FieldInfo, spec: FlagSpec, show_defaults: bool | str) -> _Field:
    """The typer parameter of one field, and how its value becomes the config's."""
    flag = _spelling(key, spec)
    kind = flag.type or _flag_type(info.annotation)
    long = "--" + key.replace(".", "-").replace("_", "-")
    names = flag.names if any(n.startswith("--") for n in flag.names) else (long, *flag.names)
    shown = _shown_default(info, names, flag) if show_defaults is True else show_defaults
    param_name = key.replace(".", "__")
    convert: Callable[[Any], Any] = _same
    text = escape(info.description) if info.description else None  # typer reads help as rich markup
    if typing.get_origin(kind) is list and not (flag.repeat or flag.argument):
        kind, convert = str, _comma_list  # a comma list, as `--candidates base,runs/law`
        text = f"{text or ''} Comma-separated.".strip()
    elif typing.get_origin(kind) is list:
        convert = list
    if flag.argument:
        default: Any = typer.Argument(None, help=text, show_default=shown)
    elif kind is bool:
        default = typer.Option(None, f"{names[0]}/{flag.off or '--no-' + names[0][2:]}", *names[1:],
                               help=text, show_default=shown)
    else:
        default = typer.Option(None, *names, help=text, show_default=shown)
    return _Field(key, inspect.Parameter(param_name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                         annotation=kind | None), convert)


def _shown_default(info: FieldInfo, names: tuple[str, ...], flag: Flag) -> str | bool:
    """The field's default as --help shows it (False: none to show)."""
    if info.default_factory is not None:
        value = info.default_factory()
    elif info.default is PydanticUndefined or info.default is None:
        return False
    else:
        value = info.default
    if isinstance(value, bool):
        return (names[0] if value else flag.off or "--no-" + names[0][2:]).lstrip("-")
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) if value else False
    return str(value)


def _same(value: Any) -> Any:
    return value


def _comma_list(text: str) -> list[str]:
    """`"a, b,,c"` → ["a", "b", "c"]."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _set_help(cls: type[BaseModel], nested: list[str]) -> str:
    """--set's help, with an example key from the config's first nested section."""
    example = "KEY.SUB=VALUE"
    for name in nested:
        section = cls.model_fields[name].annotation
        if isinstance(section, type) and issubclass(section, BaseModel) and section.model_fields:
            sub, info = next(iter(section.model_fields.items()))
            example = f"{name}.{sub}={'VALUE' if info.default is PydanticUndefined else info.default}"
            break
    return (f"Any config key as KEY=VALUE (a YAML value), e.g. --set {example}; repeatable; wins over --config "
            f"and the flags. Sections: {', '.join(nested)}.")
