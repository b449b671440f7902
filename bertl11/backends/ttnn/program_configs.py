"""Program configs: a plan's program configs, as plain-data specs (`plan` types' `ttnn_config`), made into ttnn objects.

Kept free of torch and of package imports so the ttnn contract tier, which runs in an environment with ttnn
but without torch or bertl11 installed, loads this very file and builds every plan's configs with it.
"""


def program_config_spec(program) -> tuple[str, dict]:
    """(ttnn class name, keyword arguments) of a plan's program config; ("", {}) for none (ttnn's default program)."""
    return ("", {}) if program is None else program.ttnn_config()


def ttnn_value(ttnn, value):
    """A spec value as ttnn wants it: {"CoreCoord": [x, y]} and {"UnaryWithParam": [op, param]} become objects."""
    if isinstance(value, dict) and "CoreCoord" in value:
        return ttnn.CoreCoord(*value["CoreCoord"])
    if isinstance(value, dict) and "UnaryWithParam" in value:
        op, param = value["UnaryWithParam"]
        return ttnn.UnaryWithParam(getattr(ttnn.UnaryOpType, op), param)
    return value


def build_program_config(ttnn, spec: tuple, default: str):
    """Construct a (class name, kwargs) spec with the real classes; `default` names the class for no program."""
    name, kwargs = spec
    if not name:
        return getattr(ttnn, default)()
    return getattr(ttnn, name)(**{key: ttnn_value(ttnn, value) for key, value in kwargs.items()})
