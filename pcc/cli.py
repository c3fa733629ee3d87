"""The ``pcc`` command: thin wrappers that parse arguments, call the Python API and format its answers.

Every command is registered with :func:`command` (not ``app.command``): a :class:`~pcc.errors.PccError` is
printed on stderr, one issue per line, with exit status 2 and no traceback; Ctrl-C exits with 130.

Keep module-level imports light: ``pcc validate`` and ``pcc schema`` must not import jax or flax, so a command
that needs them imports them inside its function.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from pcc import __version__
from pcc.errors import PccError

app = typer.Typer(
    name="pcc",
    help="pcc, the predictive coding compiler: YAML specs of predictive coding networks compiled to JAX.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])

# Arguments and options shared by commands.
SpecArg = Annotated[Path, typer.Argument(metavar="SPEC", help="The spec file (YAML).", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE", show_default=False,
                 help="Override a spec value, e.g. --set learning.optimizer.lr=0.01 (repeatable; VALUE is YAML)."),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


def command(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """``app.command(...)`` that reports a PccError (status 2) or an interrupt (status 130) without a traceback."""

    def register(fn: F) -> F:
        @functools.wraps(fn)
        def run(*a: Any, **k: Any) -> Any:
            try:
                return fn(*a, **k)
            except PccError as e:
                fail(str(e), e.exit_code)
            except KeyboardInterrupt:
                fail("pcc: interrupted", 130)

        app.command(*args, **kwargs)(run)
        return fn

    return register


def _version(show: bool) -> None:
    if show:
        typer.echo(f"pcc {__version__}")
        raise typer.Exit()


CACHE_ENV = "PCC_COMPILATION_CACHE"
COMPILING = frozenset({"train", "eval", "sweep", "diagnose", "explain"})
"""The commands whose XLA programs are kept on disk (``pcc bench`` measures the compile, so it never reads them)."""


def use_compilation_cache() -> None:
    """Keep the XLA programs a command compiles on disk (JAX's persistent compilation cache), so the next
    command on the same spec and shapes (a rerun, ``--resume``, ``pcc eval``) skips XLA's compile and, on a GPU,
    its autotuning. The folder is ``$PCC_COMPILATION_CACHE`` (``off`` disables it), by default
    ``~/.cache/pcc/xla``; JAX's own ``JAX_COMPILATION_CACHE_DIR`` wins when set. A folder that cannot be
    created or written turns the cache off with one warning. Set before jax is imported."""
    setting = os.environ.get(CACHE_ENV, "").strip()
    if setting.lower() in {"off", "0", "false", "no"} or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    folder = (Path(setting).expanduser() if setting
              else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pcc" / "xla")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        usable = os.access(folder, os.W_OK)
    except OSError:
        usable = False
    if not usable:
        typer.echo(f"pcc: warning: compilation cache off: {folder} is not a writable folder (set {CACHE_ENV} "
                   "to one, or to off)", err=True)
        return
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """pcc, the predictive coding compiler."""
    if ctx.invoked_subcommand in COMPILING:
        use_compilation_cache()


@command()
def validate(
    spec: SpecArg,
    set_: SetOpt = None,
    resolved: Annotated[bool, typer.Option("--resolved", help="Print the spec with every default filled in.")] = False,
) -> None:
    """Check a spec: print `SPEC: ok`, or every problem as FILE:LINE:COL: path: message (exit status 2)."""
    from pcc.spec.loader import dump_yaml, load_spec

    loaded = load_spec(spec, overrides=set_ or ())
    if resolved:
        typer.echo(dump_yaml(loaded.model_dump(mode="json", by_alias=True)), nl=False)
    else:
        typer.echo(f"{spec}: ok")


@command()
def schema() -> None:
    """Print the JSON Schema of the spec language (for editors: yaml-language-server, VS Code)."""
    from pcc.spec.schema import json_schema_text

    typer.echo(json_schema_text(), nl=False)


@command()
def explain(
    spec: SpecArg,
    set_: SetOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """What SPEC compiles to: every node and edge (shapes, parameters, init, multiplier, LR scale) and the
    inference and learning plan. Imports no jax."""
    import json

    from pcc.explain import explain as describe
    from pcc.explain import render
    from pcc.spec.loader import load_spec

    info = describe(load_spec(spec, overrides=set_ or ()))
    if json_:
        typer.echo(json.dumps(info))
    else:
        render(info)


app.command("compile", help="Alias of `pcc explain`.")(explain)


@command()
def bench(
    spec: SpecArg,
    set_: SetOpt = None,
    steps: Annotated[int, typer.Option("--steps", help="Timed train steps after warm-up.")] = 30,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Time SPEC's train step: compile time, step time, samples/s, needed FLOPs and the fraction of the
    machine's measured matmul peak."""
    import json

    from pcc.bench import bench as run_bench
    from pcc.spec.loader import load_spec

    result = run_bench(load_spec(spec, overrides=set_ or ()), steps=steps)
    if json_:
        typer.echo(json.dumps(result.to_dict()))
        return
    r = result
    chunks = "".join(f", {node} in {len(sizes)} layer chunks" for node, sizes in r.layer_chunks.items())
    chunks += f", inference in {r.batch_groups} batch groups" if r.batch_groups > 1 else ""
    typer.echo(f"{r.name} on {r.device}, batch {r.batch_size}, {r.dtype} (matmul precision {r.matmul_precision})"
               f"{chunks}\n"
               f"  compile               {r.compile_s:.2f} s (trace {r.compile_phases['trace']:.2f}, lower "
               f"{r.compile_phases['lower']:.2f}, XLA {r.compile_phases['xla']:.2f}); first step after "
               f"{r.first_step_s:.2f} s\n"
               f"  step                  {r.step_ms['median']:.2f} ms median "
               f"({r.step_ms['min']:.2f} min, {r.step_ms['max']:.2f} max)\n"
               f"  throughput            {r.samples_per_s:,.0f} samples/s\n"
               f"  needed FLOPs          {r.flops_per_step / 1e9:.3f} GFLOP/step, "
               f"{r.achieved_flops / 1e9:.1f} GFLOP/s\n"
               f"  matmul peak           {r.peak_flops / 1e9:.1f} GFLOP/s "
               f"({r.dtype}; {100 * r.fraction_of_peak:.0f} % reached)"
               + (f"\n  peak memory           {r.peak_memory_bytes / 2**20:.0f} MiB" if r.peak_memory_bytes else ""))


def _register_extensions() -> None:
    from pcc.run.cli_commands import register as register_runner
    from pcc.run.sweep_cli import register as register_sweep

    register_runner(command)
    register_sweep(command)


_register_extensions()


def main() -> None:
    """Entry point of the ``pcc`` script."""
    app(prog_name="pcc")


if __name__ == "__main__":
    main()
