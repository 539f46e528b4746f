"""No shell, no eval, no unsafe deserialisation anywhere in the package, read from the
syntax tree of every module (so a comment or a string naming them does not count, and
an alias does not hide them); and no playbook action that runs a command."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from graylogic_supervisor.engine.builtins import builtin_specs
from graylogic_supervisor.errors import PlaybookError
from graylogic_supervisor.playbooks.loader import load_playbook

PACKAGE = Path(__file__).resolve().parents[2] / "graylogic_supervisor"

FORBIDDEN_CALLS = {
    "os.system": "runs a shell",
    "os.popen": "runs a shell",
    "subprocess.getoutput": "runs a shell",
    "subprocess.getstatusoutput": "runs a shell",
    "asyncio.create_subprocess_shell": "runs a shell",
    "eval": "evaluates text as Python",
    "exec": "executes text as Python",
    "yaml.unsafe_load": "constructs any Python object",
    "yaml.unsafe_load_all": "constructs any Python object",
    "yaml.full_load": "constructs Python objects",
    "yaml.full_load_all": "constructs Python objects",
}
FORBIDDEN_ATTRIBUTES = {
    "subprocess_shell": "loop.subprocess_shell runs a shell",
    "Loader": "yaml.Loader constructs any Python object",
    "UnsafeLoader": "constructs any Python object",
    "FullLoader": "constructs Python objects",
    "UnsafeConstructor": "constructs any Python object",
}
FORBIDDEN_MODULES = {
    "pickle": "unpickling runs code",
    "cPickle": "unpickling runs code",
    "marshal": "unmarshalling untrusted data is unsafe",
    "shelve": "built on pickle",
    "dill": "unpickling runs code",
}
SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}
SPAWNING = {
    "asyncio.create_subprocess_exec",
    "subprocess.Popen",
    "subprocess.run",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
    "os.posix_spawn",
    "os.posix_spawnp",
    "os.fork",
    "pty.spawn",
}
# The only modules that start processes: the service backends, from an argv list the
# installer configured (process) or a fixed systemctl verb on a configured unit (systemd).
SPAWNERS = {"services/process.py", "services/systemd.py"}


class Checker(ast.NodeVisitor):
    """Finds what the module must not do, resolving ``import x as y`` and
    ``from x import y`` to the real dotted name."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.problems: list[tuple[int, str]] = []
        self.spawns: list[int] = []

    def dotted(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.names.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.names[alias.asname or alias.name.split(".")[0]] = (
                alias.name if alias.asname else alias.name.split(".")[0]
            )
            self.module(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module:
            self.module(node, node.module)
            for alias in node.names:
                self.names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                self.attribute(node, alias.name)

    def module(self, node: ast.stmt, name: str) -> None:
        root = name.split(".")[0]
        if root in FORBIDDEN_MODULES:
            self.problems.append((node.lineno, f"imports {root}: {FORBIDDEN_MODULES[root]}"))

    def attribute(self, node: ast.AST, name: str) -> None:
        if name in FORBIDDEN_ATTRIBUTES:
            problem = f"uses {name}: {FORBIDDEN_ATTRIBUTES[name]}"
            self.problems.append((getattr(node, "lineno", 0), problem))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.attribute(node, node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = self.dotted(node.func)
        if name in FORBIDDEN_CALLS:
            self.problems.append((node.lineno, f"calls {name}: {FORBIDDEN_CALLS[name]}"))
        if name in SPAWNING:
            self.spawns.append(node.lineno)
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                self.problems.append((node.lineno, "shell= other than False runs a shell"))
        if name in ("yaml.load", "yaml.load_all"):
            self.yaml_load(node, name)
        self.generic_visit(node)

    def yaml_load(self, node: ast.Call, name: str) -> None:
        loaders = [k.value for k in node.keywords if k.arg == "Loader"] + node.args[1:2]
        loader = self.dotted(loaders[0]) if loaders else None
        if loader is None or loader.rsplit(".", 1)[-1] not in SAFE_LOADERS:
            self.problems.append((node.lineno, f"{name} without a safe Loader"))


def check(source: str) -> Checker:
    checker = Checker()
    checker.visit(ast.parse(source))
    return checker


def modules() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert len(found) > 50, found  # the walk sees the package
    return found


def test_no_module_runs_a_shell_evaluates_code_or_unpickles() -> None:
    problems = []
    for path in modules():
        checker = check(path.read_text(encoding="utf-8"))
        problems += [f"{path.relative_to(PACKAGE)}:{line}: {why}" for line, why in checker.problems]
    assert problems == []


def test_only_the_service_backends_start_processes() -> None:
    spawners = {
        str(path.relative_to(PACKAGE)): checker.spawns
        for path in modules()
        if (checker := check(path.read_text(encoding="utf-8"))).spawns
    }
    assert set(spawners) == SPAWNERS


BAD = textwrap.dedent(
    """
    import os, subprocess as sp, asyncio, yaml, pickle
    from subprocess import getoutput as out
    from yaml import FullLoader
    os.system("reboot")
    sp.run(["ls"], shell=True)
    sp.Popen("ls", shell=flag)
    out("id")
    asyncio.create_subprocess_shell("id")
    loop.subprocess_shell(factory, "id")
    eval("1")
    exec("x = 1")
    yaml.load(text)
    yaml.load(text, Loader=yaml.Loader)
    yaml.load(text, yaml.SafeLoader)
    yaml.unsafe_load(text)
    os.popen("id")
    sp.run(["ls"], shell=False)
    """
)


def test_the_checker_finds_each_forbidden_construct_even_behind_an_alias() -> None:
    """Without this, a checker that found nothing would pass the test above."""
    found = check(BAD).problems
    assert [line for line, _ in found] == [2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 14, 16, 17]
    why = "\n".join(w for _, w in found)
    for expected in (
        "imports pickle",
        "uses FullLoader",
        "calls os.system",
        "shell= other than False",
        "calls subprocess.getoutput",
        "calls asyncio.create_subprocess_shell",
        "loop.subprocess_shell",
        "calls eval",
        "calls exec",
        "yaml.load without a safe Loader",
        "yaml.Loader constructs",
        "calls yaml.unsafe_load",
        "calls os.popen",
    ):
        assert expected in why, expected
    assert check(BAD).spawns == [6, 7, 18]


def test_no_action_takes_a_command_to_run() -> None:
    """Playbooks name configured services; none passes an argv or a command line."""
    for name, spec in builtin_specs().items():
        fields = set(spec.params_model.model_fields)
        assert not fields & {"argv", "args", "command", "cmd", "shell", "script", "exec"}, name


@pytest.mark.parametrize("action", ["run_command", "shell", "exec"])
def test_a_playbook_asking_for_a_command_is_refused_at_load_with_its_line(
    tmp_path: Path, action: str
) -> None:
    book = tmp_path / "cmd.yaml"
    book.write_text(
        textwrap.dedent(
            f"""\
            id: PLAY-CMD-001
            name: Run a command
            version: 1.0.0
            trigger: {{component: mqtt, error_ids: [ERR-INFRA-MQTT-001]}}
            steps:
              - id: run
                name: Run it
                action: {action}
                params: {{argv: [rm, -rf, /]}}
                on_success: done
            """
        )
    )
    with pytest.raises(PlaybookError) as refused:
        load_playbook(book, builtin_specs())
    assert f"{book}:8: steps[0].action: unknown action '{action}'" in str(refused.value)
