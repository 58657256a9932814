"""click parameters as plain data and back (the form ``options.py`` stores them in)."""

from typing import Any, Dict, List

import click

__all__ = ["describe", "build"]

_TYPES = {"String": click.STRING, "Float": click.FLOAT, "Int": click.INT, "Bool": click.BOOL}


def _type_data(t: click.ParamType) -> Dict[str, Any]:
    return {k: v for k, v in t.to_info_dict().items() if k != "name"}


def describe(param: click.Parameter) -> Dict[str, Any]:
    """One parameter as a JSON-able dict: its declarations, type, default, help and display settings."""
    decls = list(param.opts)
    if isinstance(param, click.Option) and param.secondary_opts:
        decls = [f"{param.opts[0]}/{param.secondary_opts[0]}", *param.opts[1:]]
    data: Dict[str, Any] = {
        "kind": "argument" if isinstance(param, click.Argument) else "option",
        "decls": decls,
        "name": param.name,
        "type": _type_data(param.type),
        "required": param.required,
        "nargs": param.nargs,
        "multiple": param.multiple,
        "metavar": param.metavar,
    }
    if _is_set(param.default):
        data["default"] = list(param.default) if isinstance(param.default, tuple) else param.default
    if isinstance(param, click.Option):
        data.update(help=param.help, is_flag=param.is_flag, show_default=param.show_default)
    return data


def _is_set(default: Any) -> bool:
    """click marks an option without a default with a sentinel (``UNSET``), not ``None``."""
    return type(default).__name__ != "Sentinel" and not callable(default)


def _type(info: Dict[str, Any]) -> click.ParamType:
    kind = info["param_type"]
    if kind == "Choice":
        return click.Choice(info["choices"], case_sensitive=info["case_sensitive"])
    if kind in ("IntRange", "FloatRange"):
        cls = click.IntRange if kind == "IntRange" else click.FloatRange
        return cls(info["min"], info["max"], min_open=info["min_open"], max_open=info["max_open"], clamp=info["clamp"])
    return _TYPES[kind]


def build(rows: List[Dict[str, Any]]) -> List[click.Parameter]:
    """The click parameters ``describe`` described."""
    params: List[click.Parameter] = []
    for row in rows:
        decls = list(row["decls"]) if row["kind"] == "argument" else [*row["decls"], row["name"]]  # the name as given
        common: Dict[str, Any] = dict(
            type=_type(row["type"]),
            required=row["required"],
            nargs=row["nargs"],
            multiple=row["multiple"],
            metavar=row["metavar"],
        )
        if "default" in row:
            common["default"] = row["default"]
        if row["kind"] == "argument":
            common.pop("multiple")
            params.append(click.Argument(decls, **common))
            continue
        if row["is_flag"]:
            common.pop("type")
            common.pop("nargs")
        params.append(
            click.Option(decls, help=row["help"], is_flag=row["is_flag"], show_default=row["show_default"], **common)
        )
    return params
