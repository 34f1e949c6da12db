"""``aigc code`` (code sessions: ask, refine, run, repair; list, show, diff, rm) and ``aigc run FILE``.

``aigc code`` is a group whose default command is ``ask``: ``aigc code "write a JavaScript bubble sort"``
is ``aigc code ask "write ..."``. A first word that is a subcommand's name (ask, list, show, diff, rm)
is that subcommand; a prompt that is exactly one of those words goes through ``aigc code ask``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from ..contracts import RunLimits
from ..errors import validation_message
from ..services.code import MAX_REPAIR, CodeRunRecord, CodeTurn, RunSpec
from .options import field_option, options_from, sampling_options
from .streaming import ReadingLine

# Exit status of ``aigc run`` (and ``aigc code`` with a run) when the program did not end by itself:
# 124 when a limit stopped it (as timeout(1) says a time limit was hit), 128 + N for signal N otherwise.
LIMIT_EXIT = 124
EXTENSIONS = {".py": "python", ".pyw": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript"}


class _AskByDefault(click.Group):
    """A group whose first argument, when it is not one of its commands, starts the ``ask`` command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["ask", *args]
        return super().parse_args(ctx, args)


def _limits(kwargs: dict) -> RunLimits:
    fields = {k: kwargs.pop(k) for k in list(kwargs) if k in RunLimits.model_fields}
    try:
        return RunLimits(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise click.UsageError(validation_message(exc.errors())[0]) from None


def limit_options(fn):
    """One option per RunLimits field (--wall-seconds, --cpu-seconds, ...), with the range declared there."""
    for name in reversed(RunLimits.model_fields):
        fn = field_option(RunLimits, name)(fn)
    return fn


def _spec(call, args, stdin, expect, limits) -> RunSpec:
    try:
        return RunSpec(call=call, args=list(args), stdin=stdin or "", expect=expect, limits=limits)
    except ValidationError as exc:
        raise click.UsageError(validation_message(exc.errors())[0]) from None


def exit_status(record: CodeRunRecord) -> int:
    """What ``aigc run`` exits with: the program's exit status; 124 when a limit stopped it; 128 + N when
    signal N killed it; 1 when it exited 0 but its output did not match the expected output."""
    result = record.result
    if result.limit is not None:
        return LIMIT_EXIT
    if result.exit_code is None:
        import signal

        return 128 + int(getattr(signal, result.signal or "SIGKILL", signal.SIGKILL))
    if result.exit_code == 0 and record.matched is False:
        return 1
    return result.exit_code


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def show_run(record: CodeRunRecord, *, outputs: bool = True) -> None:
    """A run as the terminal shows it: its stdout and stderr (unless the program's own streams carried
    them), then one line: exit status, wall and CPU time, the limit hit, whether the output matched."""
    result = record.result
    if outputs:
        click.secho(f"── run {record.id} ({result.runtime}) ──", fg="cyan", err=True)
        click.secho("stdout:", fg="cyan", err=True)
        click.echo(result.stdout or "(empty)", nl=not result.stdout.endswith("\n"))
        if result.stderr:
            click.secho("stderr:", fg="cyan", err=True)
            click.echo(result.stderr, nl=not result.stderr.endswith("\n"), err=True)
    ended = f"exit {result.exit_code}" if result.exit_code is not None else f"killed by {result.signal}"
    parts = [ended, f"wall {_seconds(result.wall_seconds)}", f"CPU {_seconds(result.cpu_seconds)}"]
    parts.append(f"limit hit: {result.limit}" if result.limit else "no limit hit")
    if result.truncated:
        parts.append(f"output cut at {result.limits.output_kb} KiB")
    if record.matched is not None:
        parts.append("output matches" if record.matched else "output does NOT match the expected")
    colour = "green" if not record.failed else "red"
    click.secho("[" + " · ".join(parts) + f"; run {record.id}, version {record.version_id}]", fg=colour, err=True)


def render_turn(turn: CodeTurn, *, stream: bool = True) -> tuple[CodeRunRecord | None, bool]:
    """Show a turn's events: the answer on stdout as it streams, versions, runs and repair attempts on
    stderr (a run's stdout on stdout). (the last run, whether the turn ended cleanly)."""
    last: CodeRunRecord | None = None
    reading = ReadingLine()  # a long prompt being read, on a terminal
    for event in turn:
        if event.kind == "reading":
            reading.show(event.read or 0, event.prompt_tokens or 0)
            continue
        reading.clear()
        if event.kind == "delta" and stream:
            click.echo(event.text, nl=False)
        elif event.kind == "version":
            v = event.version
            click.secho(
                f"\n[version {v.version} of block {v.block} ({v.language or 'language unknown'}), id {v.id}: {v.note}]",
                fg="cyan",
                err=True,
            )
        elif event.kind == "run":
            last = event.run
            show_run(event.run)
        elif event.kind == "attempt":
            click.secho(f"\n[repair attempt {event.attempt}/{event.of}]", fg="yellow", err=True)
        elif event.kind == "error":
            click.secho(f"\nError: {event.message}", fg="red", err=True)
            if event.session_id:
                click.secho(f"[session {event.session_id}]", fg="cyan", err=True)
            return last, False
        elif event.kind == "done":
            for note in event.notes:
                click.secho(f"note: {note}", fg="yellow", err=True)
            if event.finish_reason == "cancelled":
                click.secho(
                    f"\n[stopped; what was written is kept in session {event.session_id}]", fg="yellow", err=True
                )
                return last, False
            if event.finish_reason == "length":
                click.secho("\n[the answer was cut short by the token limit]", fg="yellow", err=True)
            click.secho(f'[session {event.session_id}; continue it with: aigc code -c "..."]', fg="cyan", err=True)
    return last, True


def register(cli: click.Group) -> None:
    from .main import _setting_option, _studio

    @cli.group(cls=_AskByDefault)
    def code() -> None:
        """Code sessions: ask a model for a program, refine it over turns, run it in the sandbox.

        \b
        aigc code "write a JavaScript bubble sort" --run 'bubbleSort([5,2,8,1,9,3])' --expect '[1,2,3,5,8,9]'
        aigc code -c "make it more concise" --run 'bubbleSort([3,1,2])'
        aigc code list | show SESSION | diff A B | rm SESSION

        A first word that is not a subcommand starts `aigc code ask`; a prompt that is exactly a
        subcommand's name (list, show, ...) goes through `aigc code ask "list"`.
        """

    @code.command("ask")
    @click.argument("prompt")
    @click.option(
        "--lang",
        "--language",
        "language",
        help="The language to write in: js, python, ... "
        "(default: the one the prompt names, else the session's, else the answer's).",
    )
    @click.option("-c", "--continue", "continue_", is_flag=True, help="Continue the most recent code session.")
    @click.option("--session", "session_id", help="Continue this code session (conv-…).")
    @click.option(
        "--run",
        "call",
        help="Run the code, printing this expression's value after it "
        "(JavaScript console.log(...), Python print(...)).",
    )
    @click.option("-x", "--execute", is_flag=True, help="Run the code as it is (no call appended).")
    @click.option("--expect", help="The expected output (whitespace next to brackets and commas is ignored).")
    @click.option(
        "--repair",
        type=click.IntRange(0, MAX_REPAIR),
        default=0,
        show_default=True,
        help="When the run fails, send the error back to the model up to this many times.",
    )
    @click.option("--stdin", help="Text the program reads on standard input.")
    @click.option("--arg", "args", multiple=True, help="A command-line argument for the program. Repeatable.")
    @limit_options
    @_setting_option("model", "-m", "--model")
    @sampling_options
    @click.option("--json", "as_json", is_flag=True, help="Print the turn's versions and runs as JSON at the end.")
    def code_ask(
        prompt, language, continue_, session_id, call, execute, expect, repair, stdin, args, model, as_json, **kwargs
    ):
        """Ask for a program, or (-c, --session) a change to the session's code; optionally run it.

        The code runs (in the sandbox) when --run, --execute, --expect, --stdin, --arg, --repair or a
        limit is given: the newest version of the session's first code block. Exit status: 0, or when
        the last run failed, what `aigc run` would exit with (see `aigc run --help`).
        """
        limits = _limits(kwargs)
        options = options_from(kwargs)
        studio = _studio()
        try:
            if continue_ and session_id is None:
                session_id = studio.code.latest_session_id()
                if session_id is None:
                    raise click.ClickException('no code session to continue; start one with: aigc code "..."')
            running = any((call, execute, expect is not None, stdin is not None, args, repair, limits != RunLimits()))
            spec = _spec(call, args, stdin, expect, limits) if running else None
            turn = studio.code.turn(
                prompt, session_id=session_id, language=language, model=model, options=options, run=spec, repair=repair
            )
            if as_json:
                events = list(turn)
                click.echo(json.dumps([e.to_dict() for e in events if e.kind != "delta"], ensure_ascii=False, indent=2))
                runs = [e.run for e in events if e.kind == "run"]
                clean = bool(events) and events[-1].kind == "done" and events[-1].finish_reason != "cancelled"
                last = runs[-1] if runs else None
            else:
                last, clean = render_turn(turn)
        finally:
            studio.close()
        if not clean:
            sys.exit(1)
        if last is not None and last.failed:
            sys.exit(exit_status(last) or 1)

    @code.command("list")
    @click.option("-n", "--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def code_list(limit, as_json):
        """The code sessions, most recently changed first."""
        studio = _studio()
        try:
            sessions = studio.code.sessions(limit)
        finally:
            studio.close()
        if as_json:
            click.echo(json.dumps(sessions, ensure_ascii=False, indent=2))
            return
        for s in sessions:
            language = s["language"] or "-"
            click.echo(f"{s['id']}  {language:<10} {s['versions']:>3} versions {s['runs']:>3} runs  {s['title']}")

    @code.command("show")
    @click.argument("session_id")
    @click.option("--json", "as_json", is_flag=True, help="Print the whole session as JSON.")
    def code_show(session_id, as_json):
        """A session: its versions and runs, then the newest code of each block."""
        studio = _studio()
        try:
            session = studio.code.session(session_id)
        finally:
            studio.close()
        if as_json:
            click.echo(json.dumps(session, ensure_ascii=False, indent=2))
            return
        click.secho(f"{session['id']}  {session['title']}", bold=True)
        click.secho("versions:", fg="cyan")
        for v in session["versions"]:
            language = v["language"] or "-"
            click.echo(f"  id {v['id']:<5} block {v['block']} v{v['version']:<3} {language:<10} {v['note']}")
        click.secho("runs:", fg="cyan")
        for r in session["runs"]:
            result = r["result"]
            ended = f"exit {result['exit_code']}" if result["exit_code"] is not None else f"killed {result['signal']}"
            matched = {None: "", True: " · matches", False: " · does NOT match"}[r["matched"]]
            hit = f" · limit {result['limit']}" if result["limit"] else ""
            wall = f"{result['wall_seconds']:.2f} s"
            click.echo(f"  run {r['id']:<5} version id {r['version_id']:<5} {ended} · {wall}{hit}{matched}")
        newest: dict[int, dict] = {}
        for v in session["versions"]:
            newest[v["block"]] = v
        for block, v in sorted(newest.items()):
            click.secho(f"\nblock {block}, v{v['version']} ({v['language'] or 'language unknown'}):", fg="cyan")
            click.echo(v["code"], nl=False)

    @code.command("diff")
    @click.argument("a", type=int)
    @click.argument("b", type=int)
    def code_diff(a, b):
        """A unified diff from version id A to version id B (ids as `aigc code show` lists them)."""
        studio = _studio()
        try:
            text = studio.code.diff(a, b)
        finally:
            studio.close()
        click.echo(text if text else "(no difference)")

    @code.command("rm")
    @click.argument("session_ids", nargs=-1, required=True)
    def code_rm(session_ids):
        """Delete code sessions, with their versions and runs."""
        studio = _studio()
        try:
            for session_id in session_ids:
                studio.code.delete(session_id)
                click.echo(f"deleted {session_id}")
        finally:
            studio.close()

    @cli.command("run", context_settings={"ignore_unknown_options": True})
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.option("--lang", "--language", "language", help="python or javascript (default: from the file's extension).")
    @click.option("--call", help="Print this expression's value after the program.")
    @click.option("--stdin", help="Text the program reads on standard input (default: this command's piped stdin).")
    @click.option("--expect", help="The expected output; a mismatch exits 1.")
    @limit_options
    def run(file, args, language, call, stdin, expect, **kwargs):
        """Run FILE in the sandbox (no network, no host files, limits), with ARGS after `--`.

        The program's stdout and stderr go to this command's; a summary line follows on stderr. The run
        is stored as a code session titled by the file's name. Exit status: the program's; 124 when a
        limit stopped it; 128 + N when signal N killed it; 1 when --expect did not match.
        """
        limits = _limits(kwargs)
        if language is None:
            language = EXTENSIONS.get(file.suffix.lower())
            if language is None:
                raise click.UsageError(
                    f"cannot tell the language of {file.name} from its extension; give --lang python or --lang js"
                )
        try:
            source = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise click.UsageError(f"{file} is not UTF-8 text") from None
        if stdin is None and not sys.stdin.isatty():
            stdin = sys.stdin.read()
        spec = _spec(call, args, stdin, expect, limits)
        studio = _studio()
        try:
            record = studio.code.run_source(language, source, spec, title=file.name)
        finally:
            studio.close()
        result = record.result
        click.echo(result.stdout, nl=False)
        click.echo(result.stderr, nl=False, err=True)
        show_run(record, outputs=False)
        click.secho(f"[stored: session {record.session_id}]", fg="cyan", err=True)
        sys.exit(exit_status(record))
