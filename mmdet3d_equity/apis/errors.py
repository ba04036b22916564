"""The errors the command-line tools report as one line (``<tool>: error:
<message>``, exit status 2) instead of a traceback: each names the problem
and the fix (catalogue: docs/errors.md). Anything else is a bug and keeps
its traceback."""
from ..utils.errors import EquityError

#: for ``except TOOL_ERRORS as e``: every error of the package
TOOL_ERRORS = (EquityError, )


def error_message(error: BaseException) -> str:
    """The message of ``error``; for an error a DataLoader worker raised
    (torch re-raises it in the main process with the worker's whole
    traceback as its message), the original message, said to come from the
    worker."""
    msg = str(error)
    head, sep, trace = msg.partition('\nOriginal Traceback (most recent call '
                                     'last):')
    if not sep:
        return msg
    cls = type(error)
    for name in (f'{cls.__module__}.{cls.__qualname__}: ',
                 f'{cls.__qualname__}: '):
        at = trace.rfind('\n' + name)
        if at >= 0:
            where = head.split(' ', 2)[-1].rstrip('.')
            return f'{trace[at + 1 + len(name):].strip()} ({where})'
    return msg


def report_error(tool: str, error: BaseException) -> int:
    """Print ``<tool>: error: <message>`` to stderr; return the exit
    status 2."""
    import sys
    print(f'{tool}: error: {error_message(error)}', file=sys.stderr,
          flush=True)
    return 2


def one_line_errors(tool: str):
    """Decorator of a tool's ``main``: a package error (an
    :class:`EquityError`, also one raised while a config dict is built:
    :func:`~mmdet3d_equity.utils.config_checks.config_build_error`) is
    printed as ``<tool>: error: <message>`` and the tool exits with status
    2; anything else keeps its traceback."""
    import functools

    def wrap(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            import sys

            from ..utils.config_checks import config_build_error
            try:
                return main(*args, **kwargs)
            except TOOL_ERRORS as e:
                sys.exit(report_error(tool, e))
            except (TypeError, KeyError) as e:
                err = config_build_error(e)
                if err is None:
                    raise
                sys.exit(report_error(tool, err))
        run.tool = tool  # the name its error lines start with
        return run
    return wrap


def add_json_output(parser) -> None:
    """``--json FILE`` and ``--overwrite`` of the benchmark scripts."""
    parser.add_argument('--json', help='also write the numbers to this '
                        'JSON file')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing --json file')


def check_json_output(parser, args) -> None:
    """Before any measurement: an existing ``--json`` file is refused
    unless ``--overwrite``, and its folder must be writable (a parser
    error naming the problem)."""
    if args.json:
        from ..utils.fileio import OutputError, check_output_file
        try:
            check_output_file(args.json, args.overwrite, '--json')
        except OutputError as e:
            parser.error(str(e))
