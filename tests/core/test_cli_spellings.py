"""Every flag spelling the `amauta` command has ever had keeps working.

`SPELLINGS` is the option list of every command as it was before the options were derived from the
configs (captured by walking the command tree of main at 3982fe3, after --verbose, --system, --template and
`eval exam` had joined it; `data augment` and `data build-exam` at 2dd8557, before theirs were; `data
preferences` and `eval harness` as they first landed). A new command gets its entry here when it lands. New flags may appear; none may vanish, be renamed, lose a short form or a
`--no-…` switch, start or stop taking a value, or stop being repeatable.
"""

from __future__ import annotations

import pytest
import typer

from amauta.cli import app

# command path → its parameters: "CONFIG" an argument ("DOCS..." takes many), "--out -o" an option taking a
# value, "(flag)" an on/off switch, "--a / --no-a" a switch with its off spelling, "(repeatable)" may repeat.
SPELLINGS: dict[str, list[str]] = {
    '': ['--debug (flag)', '--threads', '--verbose (flag)'],
    'chat': ['--model -m', '--adapter', '--strategy -s', '--system', '--template', '--rag', '--rag-top-k',
             '--max-new-tokens -n', '--dtype', '--quantization -q', '--threads'],
    'data': [],
    'data augment': ['DOCS...', '--recipe -r', '--out -o', '--config -c', '--from (repeatable)', '--exam', '--model',
                     '--llm-model', '--base-url', '--api-key', '--restatements -k', '--phrasings', '--mix',
                     '--mix-ratio', '--raft-p', '--raft-distractors', '--raft-missing', '--seed', '--workers',
                     '--cache', '--overwrite (flag)'],
    'data build-exam': ['DOCS...', '--out -o', '--config -c', '--model -m', '--base-url', '--api-key', '--adapter',
                        '--facts-per-chunk', '--questions-per-fact', '--unanswerable-per-chunk',
                        '--document-only-share', '--seed', '--retries', '--max-chars', '--min-chars',
                        '--max-retries', '--workers', '--temperature', '--cache', '--threads'],
    'data build-qa': ['DOCS...', '--out -o', '--config -c', '--model -m', '--base-url', '--api-key',
                      '--adapter', '--pairs-per-chunk -n', '--retries', '--max-chars', '--min-chars',
                      '--max-retries', '--workers', '--temperature', '--cache', '--threads'],
    'data prepare': ['CONFIG', '--out -o', '--skip-invalid / --no-skip-invalid', '--model',
                     '--overwrite (flag)'],
    'data preferences': ['FILES...', '--from-judge', '--out -o', '--min-gap', '--val-fraction', '--config -c',
                         '--overwrite (flag)'],
    'data review': ['QA', '--out -o'],
    'data show': ['FOLDER', '-n', '--mask (flag)', '--model', '--system'],
    'eval': [],
    'eval belebele': ['--config -c', '--model -m', '--adapter', '--compare', '--data', '--language',
                      '--split', '--formulation -f', '--prompt', '--shots -k', '--shots-from',
                      '--max-new-tokens', '--system', '--limit', '--batch-size', '--out -o', '--dtype',
                      '--device', '--quantization', '--progress / --no-progress', '--threads'],
    'eval harness': ['--model -m', '--adapter', '--compare', '--batch-size', '--out -o', '--dtype', '--device',
                     '--quantization', '--system', '--tasks', '--include-path', '--data', '--limit', '--num-fewshot',
                     '--apply-chat-template / --no-apply-chat-template', '--bootstrap-iters', '--config -c',
                     '--progress / --no-progress', '--threads'],
    'eval exam': ['--config -c', '--exam', '--split', '--candidates', '--model -m',
                  '--gold-passage / --no-gold-passage', '--docs', '--options-only / --no-options-only',
                  '--short-answer / --no-short-answer', '--prompt-format', '--rag-top-k',
                  '--max-new-tokens', '--seed', '--export-lm-eval', '--limit', '--batch-size', '--out -o',
                  '--dtype', '--device', '--quantization', '--progress / --no-progress', '--threads'],
    'eval grade': ['RUN_DIR', '--grader -g', '--limit', '--attempts', '--status (flag)'],
    'eval judge': ['--set', '--model -m', '--candidates -c', '--n', '--strategy', '--max-new-tokens',
                   '--seed', '--limit', '--rag-top-k', '--quantization', '--dtype', '--device',
                   '--judge-model', '--judge-url', '--judge-api-key', '--judge-workers',
                   '--skip-judge / --with-judge', '--out -o', '--config', '--summary (flag)', '--threads'],
    'eval mgsm': ['--config -c', '--model -m', '--adapter', '--compare', '--data', '--max-new-tokens',
                  '--system', '--limit', '--batch-size', '--out -o', '--dtype', '--device',
                  '--quantization', '--progress / --no-progress', '--threads'],
    'eval perplexity': ['--config -c', '--model -m', '--adapter', '--compare', '--data', '--max-length',
                        '--limit', '--batch-size', '--out -o', '--dtype', '--device', '--quantization',
                        '--progress / --no-progress', '--threads'],
    'eval xquad': ['--config -c', '--model -m', '--adapter', '--compare', '--data', '--max-new-tokens',
                   '--system', '--limit', '--batch-size', '--out -o', '--dtype', '--device',
                   '--quantization', '--progress / --no-progress', '--threads'],
    'export': ['RUN_DIR', '--out -o', '--merge (flag)', '--gguf (flag)', '--dtype', '--overwrite (flag)'],
    'generate': ['PROMPT', '--model -m', '--strategy -s', '--max-new-tokens -n', '--system', '--template',
                 '--adapter', '--raw (flag)', '--json (flag)', '--temperature', '--top-k', '--top-p',
                 '--penalty-alpha', '--repetition-penalty', '--num-beams', '--stop (repeatable)', '--seed',
                 '--dtype', '--quantization -q', '--threads'],
    'models': ['--json (flag)', '--all (flag)'],
    'models convert': ['NAME', '--force (flag)'],
    'models show': ['NAME'],
    'plot-loss': ['RUN_DIRS...', '--out -o', '--title'],
    'rag': [],
    'rag ask': ['QUESTION', '--index -i', '--model -m', '--adapter', '--base-url', '--api-key',
                '--top-k -k', '--min-score', '--mode', '--max-tokens', '--retrieve-only (flag)',
                '--json (flag)', '--qdrant-url', '--threads'],
    'rag index': ['DOCS...', '--index -i', '--embedder', '--qdrant-url', '--max-chars', '--overlap',
                  '--threads', '--rebuild (flag)', '--config'],
    'rag list': [],
    'report': ['RUN_DIRS...', '--out -o', '--title', '--overwrite (flag)'],
    'run': ['PIPELINE', '--only (repeatable)', '--force (flag)', '--threads', '--verbose (flag)'],
    'serve': ['--model -m (repeatable)', '--adapter (repeatable)', '--backend -b', '--host', '--port -p',
              '--api-key', '--insecure (flag)', '--rag', '--rag-top-k', '--max-tokens-limit',
              '--max-body-bytes', '--max-queue', '--system', '--template', '--dtype', '--quantization -q',
              '--threads', '--context', '--dry-run (flag)'],
    'train': ['CONFIG', '--preset', '--model', '--dataset', '--out --output-dir -o', '--lr', '--epochs',
              '--max-steps', '--batch-size', '--micro-batch-size', '--lora-r', '--seed',
              '--set (repeatable)', '--resume (flag)', '--overwrite (flag)', '--list-presets (flag)',
              '--progress / --no-progress', '--threads'],
}


def _commands(command, path: tuple[str, ...] = ()) -> dict[str, object]:
    """Every command and group of the tree under `command`, by its path ('' for `amauta` itself)."""
    found = {" ".join(path): command}
    for name, sub in (getattr(command, "commands", None) or {}).items():
        found.update(_commands(sub, (*path, name)))
    return found


def _describe(param) -> str:
    """One parameter in the notation of `SPELLINGS`."""
    if param.param_type_name == "argument":
        return f"{param.name.upper()}{'...' if param.nargs == -1 else ''}"
    text = " ".join(sorted(param.opts))
    if param.secondary_opts:
        text += " / " + " ".join(sorted(param.secondary_opts))
    elif param.is_flag:
        text += " (flag)"
    return text + (" (repeatable)" if param.multiple else "")


def _parse(entry: str) -> tuple[frozenset, frozenset, str, bool]:
    """(spellings, off spellings, kind, repeatable) of one `SPELLINGS` entry or `_describe` line."""
    repeatable = entry.endswith(" (repeatable)")
    entry = entry.removesuffix(" (repeatable)")
    if not entry.startswith("-"):
        return frozenset([entry]), frozenset(), "argument", repeatable
    on, _, off = entry.partition(" / ")
    kind = "switch" if off or on.endswith(" (flag)") else "value"
    return frozenset(on.removesuffix(" (flag)").split()), frozenset(off.split()), kind, repeatable


TREE = _commands(typer.main.get_command(app))


@pytest.mark.parametrize("path", sorted(SPELLINGS))
def test_every_old_spelling_still_works(path):
    assert path in TREE, f"`amauta {path}` is gone"
    now = [_parse(_describe(p)) for p in TREE[path].params]
    for entry in SPELLINGS[path]:
        names, off, kind, repeatable = _parse(entry)
        assert any(names <= n and off <= o and kind == k and repeatable == r for n, o, k, r in now), \
            f"`amauta {path}`: '{entry}' changed; now: {[_describe(p) for p in TREE[path].params]}"


def test_no_spelling_is_declared_twice():
    """Two options of one command may not claim the same spelling (click would silently take the last)."""
    for path, command in TREE.items():
        seen = [name for p in command.params if p.param_type_name == "option" for name in p.opts + p.secondary_opts]
        assert len(seen) == len(set(seen)), f"`amauta {path}` declares a spelling twice: {sorted(seen)}"


def test_every_command_has_its_spellings_frozen():
    """A command without an entry above could lose a flag unnoticed: capture it when it lands."""
    missing = sorted(path for path in TREE if path not in SPELLINGS)
    assert not missing, f"add SPELLINGS entries for: {missing} (the parameters `_describe` gives today)"
