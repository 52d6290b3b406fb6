"""The docs keep up with the code: every family, adapter, suite key, task key and command is documented, and links resolve."""

import re
from pathlib import Path

import pytest

from adapters import ADAPTERS
from bench.suite import Defaults, SlurmConfig, SuiteHead, Uncertainty
from bench.tasks import TASKS

REPO = Path(__file__).resolve().parent.parent
DOCS = {p.name: p.read_text() for p in (REPO / "docs").glob("*.md")}
README = (REPO / "README.md").read_text()


def mentioned(name: str, text: str) -> bool:
    return f"`{name}`" in text or re.search(rf"`[^`]*\b{re.escape(name)}\b[^`]*`", text) is not None


@pytest.mark.parametrize("name", TASKS.list())
def test_every_family_and_its_keys_are_in_tasks_md(name):
    text = DOCS["tasks.md"]
    assert f"`{name}`" in text, f"docs/tasks.md does not mention task type '{name}'"
    keys = [k for k in TASKS.get(name).Config.model_fields if k not in ("name", "type", "models")]
    assert not [k for k in keys if not mentioned(k, text)], f"docs/tasks.md lacks keys of '{name}'"


@pytest.mark.parametrize("name", ADAPTERS.list())
def test_every_adapter_and_its_keys_are_in_adapters_md(name):
    text = DOCS["adapters.md"]
    assert f"`{name}`" in text, f"docs/adapters.md does not mention adapter '{name}'"
    keys = [k for k in ADAPTERS.get(name).Args.model_fields if k not in ("name", "adapter")]
    assert not [k for k in keys if not mentioned(k, text)], f"docs/adapters.md lacks keys of '{name}'"


def test_every_suite_key_is_in_suites_md():
    text = DOCS["suites.md"]
    missing = [k for k in SuiteHead.model_fields if not re.search(rf"^{k}:", text, re.M)]
    missing += [f"{block}.{k}" for block, cls in (("defaults", Defaults), ("uncertainty", Uncertainty), ("slurm", SlurmConfig)) for k in cls.model_fields if not re.search(rf"^\s+{k}:", text, re.M)]
    assert not missing, f"docs/suites.md's example lacks keys {missing}"


def test_every_command_is_in_commands_md():
    from typer.main import get_command

    from bench.cli import app

    cli = get_command(app)
    names = [f"bench {n}" if not hasattr(c, "commands") else f"bench {n} {s}" for n, c in cli.commands.items() for s in (getattr(c, "commands", None) or [""])]
    missing = [n for n in names if n.strip() not in DOCS["commands.md"]]
    assert not missing, f"docs/commands.md lacks {missing}"


def test_links_between_docs_resolve():
    def anchors(text):
        return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.*)$", text, re.M)}

    bad = []
    for where, text in [("README.md", README)] + [(f"docs/{n}", t) for n, t in DOCS.items()]:
        base = (REPO / where).parent
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", text)):
            if target.startswith("http"):
                continue
            path, _, anchor = target.partition("#")
            file = (base / path) if path else REPO / where
            if not file.exists():
                bad.append(f"{where}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
                bad.append(f"{where}: {target} (no such heading)")
    assert not bad, "\n".join(bad)
