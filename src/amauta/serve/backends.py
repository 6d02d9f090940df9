"""Backends: who turns a prompt into tokens behind the API. One small interface, three implementations.

- `transformers` (default): Amauta's own decoding (`amauta.chat.generate.Generation`): every strategy
  (greedy, sampling, beam, contrastive), LoRA adapters served beside their base model, any registry model.
- `llamacpp`: a GGUF file through `llama-cpp-python` (the optional `llamacpp` extra). Several times faster
  on a CPU; greedy and sampling only. LoRA adapters are converted once to GGUF LoRA files
  (`amauta.serve.gguf_lora`) and applied by llama.cpp at run time on the one copy of the base weights.
- `vllm`: not run in-process: `vllm_command` builds vLLM's own OpenAI server command (base model plus
  `--enable-lora --lora-modules`) and `amauta serve` execs it. The choice for a GPU with many users.

A backend's `start(model_id, prompt_or_messages, settings, stop_event)` returns a run: iterate it for text
deltas; afterwards `run.result` has `prompt_tokens`, `new_tokens`, `text` and `finish_reason`. `start`
and the iteration happen on the model's worker thread (`amauta.serve.worker`), one run at a time.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from amauta.core.errors import AmautaError, ContextTooLongError, did_you_mean

BACKENDS = ("transformers", "llamacpp", "vllm")
Prompt = str | Sequence[dict[str, str]]


@dataclass
class ModelCard:
    """One id a client can ask for: a base model, or an adapter on top of `parent`."""

    id: str
    parent: str | None = None
    context_length: int = 0
    backend: str = "transformers"
    strategies: tuple[str, ...] = ("greedy", "sampling", "beam", "contrastive")
    default_max_tokens: int = 256

    def to_openai(self, created: int) -> dict:
        return {"id": self.id, "object": "model", "created": created, "owned_by": "amauta",
                "root": self.parent or self.id, "parent": self.parent,
                "context_length": self.context_length, "backend": self.backend,
                "strategies": list(self.strategies)}


@dataclass
class RunResult:
    """What a finished run reports (the fields of `amauta.chat.generate.GenerationResult` the API needs)."""

    text: str = ""
    prompt_tokens: int = 0
    new_tokens: int = 0
    finish_reason: str = "stop"
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of wall time (as `GenerationResult`'s, for the terminal chat)."""
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


class Backend(Protocol):
    """What the app needs from a backend."""

    name: str

    def cards(self) -> list[ModelCard]:
        """Every model id served (base models first, then adapters)."""
        ...

    def worker_key(self, model_id: str) -> str:
        """Runs with the same key share one worker thread (an adapter shares its base model's weights)."""
        ...

    def settings(self, model_id: str, **overrides: Any):
        """`GenerationSettings` for `model_id`: its profile's defaults with the request's overrides."""
        ...

    def loaded(self, model_id: str) -> Any:
        """The `LoadedModel` behind `model_id` (None when the backend has none, e.g. llama.cpp)."""
        ...

    def start(self, model_id: str, prompt_or_messages: Prompt, settings: Any,
              stop_event: threading.Event | None) -> Iterator[str]:
        """A run: iterate for text deltas; `.result` afterwards. Called on the worker thread."""
        ...


def parse_adapters(values: Sequence[str]) -> dict[str, Path]:
    """`name=PATH` options → {name: path}; a malformed one is a one-line error."""
    adapters: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise AmautaError(f"--adapter {value!r}: expected NAME=PATH, e.g. --adapter sri=runs/sri-lora")
        if name in adapters:
            raise AmautaError(f"--adapter {name}: given twice; give each adapter a different name")
        adapters[name.strip()] = Path(path.strip()).expanduser()
    return adapters


# --- transformers ------------------------------------------------------------------------------------

class TransformersBackend:
    """Registry models through transformers and Amauta's decoding; adapters share their base's weights.

    models: {model id: LoadedModel}. The first model carries the adapters.
    adapters: {adapter id: adapter folder (or training run folder)}, loaded with peft onto the first model;
        a request for the base id runs with the adapters disabled.
    """

    name = "transformers"

    def __init__(self, models: dict[str, Any], adapters: dict[str, Path] | None = None):
        if not models:
            raise AmautaError("no model to serve; pass --model NAME")
        self.models = dict(models)
        self.adapter_of: dict[str, str] = {}  # adapter id -> base id
        if adapters:
            self._load_adapters(next(iter(self.models)), adapters)

    @classmethod
    def load(cls, specs: Sequence[str], adapters: dict[str, Path] | None = None, *, dtype: str = "auto",
             quantization: str = "none", device: str = "auto", system_prompt: str | None = None,
             template: str | None = None) -> TransformersBackend:
        """Load each model spec (registry name, hub id, folder, .gguf) with `load_model`.

        system_prompt: for requests without a system message, instead of each profile's ("" = none).
        template: render with this Amauta template instead of the tokenizers' own.
        """
        from amauta.models.load import load_model

        models = {}
        for spec in specs:
            model_id = Path(spec).name if ("/" in spec and Path(spec).exists()) else spec
            models[model_id] = load_model(spec, dtype=dtype, quantization=quantization, device=device,
                                          system_prompt=system_prompt, template=template)
        return cls(models, adapters)

    def _load_adapters(self, base_id: str, adapters: dict[str, Path]) -> None:
        from peft import PeftModel

        from amauta.models.load import adapter_dir

        loaded = self.models[base_id]
        model = loaded.model
        for name, path in adapters.items():
            if name in self.models:
                raise AmautaError(f"--adapter {name}: the name is already a model id; choose another name")
            folder = adapter_dir(path)
            try:
                if isinstance(model, PeftModel):
                    model.load_adapter(str(folder), adapter_name=name)
                else:
                    model = PeftModel.from_pretrained(model, str(folder), adapter_name=name)
            except (ValueError, KeyError, RuntimeError, OSError) as exc:
                raise AmautaError(f"{folder}: this adapter does not fit {base_id} "
                                  f"({str(exc).strip().splitlines()[0][:200]}); serve it with its base model") from None
            self.adapter_of[name] = base_id
        model.eval()
        loaded.model = model

    def _base(self, model_id: str) -> str:
        if model_id in self.models:
            return model_id
        if model_id in self.adapter_of:
            return self.adapter_of[model_id]
        ids = list(self.models) + list(self.adapter_of)
        raise AmautaError(f"model '{model_id}' is not served here{did_you_mean(model_id, ids)}; "
                          f"served: {', '.join(ids)}")

    def cards(self) -> list[ModelCard]:
        out = []
        for model_id, loaded in self.models.items():
            out.append(ModelCard(model_id, None, _context_length(loaded), self.name,
                                 default_max_tokens=_profile_max_tokens(loaded.profile)))
        for name, base in self.adapter_of.items():
            loaded = self.models[base]
            out.append(ModelCard(name, base, _context_length(loaded), self.name,
                                 default_max_tokens=_profile_max_tokens(loaded.profile)))
        return out

    def worker_key(self, model_id: str) -> str:
        return self._base(model_id)

    def loaded(self, model_id: str) -> Any:
        return self.models[self._base(model_id)]

    def settings(self, model_id: str, **overrides: Any):
        from amauta.chat.decoding import GenerationSettings

        return GenerationSettings.from_profile(self.loaded(model_id).profile, **overrides)

    def start(self, model_id: str, prompt_or_messages: Prompt, settings: Any,
              stop_event: threading.Event | None) -> Iterator[str]:
        from amauta.chat.generate import Generation

        base = self._base(model_id)
        loaded = self.models[base]
        if self.adapter_of:  # choose the adapter (or none) for this run; runs never overlap on one worker
            return _AdapterRun(loaded, None if model_id == base else model_id,
                               lambda: Generation(loaded, prompt_or_messages, settings, stop_event))
        return Generation(loaded, prompt_or_messages, settings, stop_event)


class _AdapterRun:
    """A Generation that runs with one peft adapter active, or with all adapters disabled."""

    def __init__(self, loaded: Any, adapter: str | None, make):
        self.model, self.adapter = loaded.model, adapter
        self.result = None
        with self._active():
            self.inner = make()  # encodes the prompt and checks it fits; errors surface before streaming

    def _active(self):
        import contextlib

        if self.adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(self.adapter)
        return contextlib.nullcontext()

    def __iter__(self) -> Iterator[str]:
        with self._active():
            yield from self.inner
        self.result = self.inner.result


def _context_length(loaded: Any) -> int:
    return int(getattr(loaded.profile, "context_length", 0) or 0) or int(
        getattr(loaded.model.config, "max_position_embeddings", 0) or 2048)


def _profile_max_tokens(profile: Any) -> int:
    generation = getattr(profile, "generation", None)
    value = getattr(generation, "max_new_tokens", None) if generation is not None else None
    if value is None and isinstance(generation, dict):
        value = generation.get("max_new_tokens")
    return int(value or 256)


# --- llama.cpp ---------------------------------------------------------------------------------------

def resolve_gguf(spec: str) -> tuple[Path, Any]:
    """A GGUF path and its registry profile (or None) from a registry name with a GGUF source or a .gguf path."""
    from amauta.models import embedded
    from amauta.models.registry import get_profile, profile_names

    if spec in profile_names():
        profile = get_profile(spec)
        if profile.source.startswith("embedded:"):
            return embedded.locate_gguf(profile.source), profile
        if profile.source.lower().endswith(".gguf"):
            return Path(profile.source).expanduser(), profile
        raise AmautaError(f"--backend llamacpp needs a GGUF file, and '{spec}' comes from {profile.source}; "
                          "pass a .gguf path (export one with `amauta train export --gguf`), or use "
                          "--backend transformers")
    path = Path(spec).expanduser()
    if path.suffix.lower() != ".gguf":
        raise AmautaError(f"--backend llamacpp needs a .gguf file or an embedded model (e.g. smollm2-135m-instruct), "
                          f"got '{spec}'")
    if not path.is_file():
        raise AmautaError(f"{path}: file not found")
    return path, gguf_profile(path)


def gguf_profile(path: Path) -> Any:
    """The profile an Amauta export recorded in a GGUF's metadata (`amauta.profile`, template, system prompt),
    or None for another GGUF."""
    from amauta.models.embedded import gguf_model_info
    from amauta.models.registry import get_profile, profile_names

    info = gguf_model_info(path)
    if info.get("profile") not in profile_names():
        return None
    fields = {k: info[k] for k in ("template", "use_tokenizer_template", "system_prompt") if info.get(k) is not None}
    return get_profile(info["profile"]).model_copy(update={"name": path.stem, "source": str(path), **fields})


def default_threads() -> int:
    """Half the cores this process may use, at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


class _LlamaRun:
    """One llama.cpp completion, streamed; `.result` afterwards."""

    def __init__(self, backend: LlamaCppBackend, model_id: str, prompt_or_messages: Prompt, settings: Any,
                 stop_event: threading.Event | None):
        base = backend.base_of(model_id)
        entry = backend.entries[base]
        self.entry, self.adapter = entry, None if model_id == base else model_id
        self.llama, self.settings, self.stop_event = entry.llama, settings, stop_event
        if settings.strategy not in ("greedy", "sampling"):
            raise AmautaError(f"strategy '{settings.strategy}' is not available on the llamacpp backend "
                              "(greedy and sampling are); use --backend transformers for contrastive and beam search")
        self.prompt = prompt_or_messages if isinstance(prompt_or_messages, str) else entry.render(list(prompt_or_messages))
        self.prompt_ids = self.llama.tokenize(self.prompt.encode("utf-8"), add_bos=True, special=True)
        context = self.llama.n_ctx()
        if len(self.prompt_ids) >= context:
            raise ContextTooLongError(f"{model_id}: the prompt has {len(self.prompt_ids)} tokens but the context "
                                      f"holds {context}; shorten the prompt (or restart with a larger --context)",
                                      prompt_tokens=len(self.prompt_ids), context=context)
        self.max_tokens = min(settings.max_new_tokens, context - len(self.prompt_ids))
        self.stops = list(dict.fromkeys([*entry.stops, *settings.stop]))
        self.result: RunResult | None = None

    def __iter__(self) -> Iterator[str]:
        s, started = self.settings, time.perf_counter()
        sampling = s.strategy == "sampling"
        self.entry.activate(self.adapter)  # here, on the worker thread, right before this run decodes
        chunks = self.llama.create_completion(
            self.prompt_ids, max_tokens=self.max_tokens, stream=True, stop=self.stops or None,
            temperature=s.temperature if sampling else 0.0, top_p=s.top_p, top_k=s.effective_top_k if sampling else 1,
            min_p=0.0, repeat_penalty=s.repetition_penalty, seed=s.seed)
        text, finish = [], "length"
        try:
            for chunk in chunks:
                choice = chunk["choices"][0]
                if choice.get("text"):
                    text.append(choice["text"])
                    yield choice["text"]
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                if self.stop_event is not None and self.stop_event.is_set():
                    finish = "cancelled"
                    break
        finally:
            chunks.close()  # ends llama.cpp's generator (and its decoding) at once
        answer = "".join(text)
        # llama.cpp's stream does not count tokens; re-tokenizing the answer gives the same count, plus the eos.
        new = len(self.llama.tokenize(answer.encode("utf-8"), add_bos=False, special=False)) if answer else 0
        self.result = RunResult(answer, len(self.prompt_ids), new + (finish == "stop"), finish,
                                time.perf_counter() - started)


@dataclass
class _GgufEntry:
    llama: Any
    profile: Any
    stops: list[str] = field(default_factory=list)
    template: Any = None
    template_source: str = ""
    adapters: dict[str, Any] = field(default_factory=dict)
    """adapter id → llama.cpp LoRA adapter handle, loaded on this model's weights."""
    active: str | None = None
    """The adapter the context applies now (None: the plain base)."""

    def activate(self, adapter: str | None) -> None:
        """Apply `adapter` (None: none) to the next decoding. llama.cpp applies a LoRA at compute time over the
        shared base weights, so switching costs nothing but the prompt cache, which is dropped: the cached
        keys and values were computed under the other adapter."""
        if adapter == self.active:
            return
        import ctypes

        import llama_cpp

        if adapter is None:
            status = llama_cpp.llama_set_adapters_lora(self.llama.ctx, None, 0, None)
        else:
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.adapters[adapter])
            status = llama_cpp.llama_set_adapters_lora(self.llama.ctx, handles, 1, (ctypes.c_float * 1)(1.0))
        if status != 0:
            raise AmautaError(f"llama.cpp could not apply adapter '{adapter}' (status {status})")
        self.llama.reset()
        self.active = adapter

    def render(self, messages: list[dict]) -> str:
        """The prompt, under the same system-prompt rule as `amauta.models.templates.apply_template`."""
        from amauta.models.templates import render_foreign, render_messages, with_system_prompt

        messages = with_system_prompt(messages, getattr(self.profile, "system_prompt", "") or "")
        if self.profile is not None and not self.profile.use_tokenizer_template:
            return render_messages(messages, self.profile.template)
        formatter = self.template  # llama-cpp-python's formatter always adds the generation prompt
        return render_foreign(messages, self.template_source, lambda m, gen: formatter(messages=m).prompt,
                              template=getattr(self.profile, "template", None))


class LlamaCppBackend:
    """GGUF models through llama-cpp-python (greedy and sampling), with LoRA adapters on the first one.

    specs: registry names with a GGUF source (the embedded SmolLM2) or .gguf paths.
    adapters: {adapter id: PEFT adapter / training run folder, or GGUF LoRA file} served on the first model.
        Each is checked against that GGUF and converted once (`amauta.serve.gguf_lora`) before llama.cpp
        loads anything; all of them share the base weights and one context (a run applies its own).
    context: the context window to allocate (default: the profile's, at most 4096, to keep memory small).
    threads: CPU threads for decoding (default: half the cores, llama.cpp's own choice: its threads spin
        while waiting, so on a busy machine more threads than free cores make decoding many times slower).
    """

    name = "llamacpp"

    def __init__(self, specs: Sequence[str], *, adapters: dict[str, Path] | None = None, context: int | None = None,
                 threads: int | None = None, system_prompt: str | None = None, template: str | None = None):
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError:
            raise AmautaError("--backend llamacpp needs llama-cpp-python: pip install 'amauta[llamacpp]' "
                              "(it compiles llama.cpp, about 6 minutes)") from None
        if not specs:
            raise AmautaError("no model to serve; pass --model NAME or a .gguf path")
        self.entries: dict[str, _GgufEntry] = {}
        self.adapter_of: dict[str, str] = {}  # adapter id -> base id
        from amauta.models.load import customize_profile

        resolved = [resolve_gguf(spec) for spec in specs]
        lora_files = self._prepare_adapters(specs[0], *resolved[0], adapters) if adapters else {}
        for path, profile in resolved:
            if profile is not None:
                profile = customize_profile(profile, system_prompt=system_prompt, template=template)
            model_id = profile.name if profile is not None else path.stem
            ctx = context or min(int(getattr(profile, "context_length", 0) or 4096), 4096)
            llama = llama_cpp.Llama(str(path), n_ctx=ctx, n_threads=threads or default_threads(), verbose=False)
            entry = _GgufEntry(llama, profile, list(getattr(profile, "stop_strings", None) or []))
            chat_template = llama.metadata.get("tokenizer.chat_template")
            if profile is None or profile.use_tokenizer_template:
                if not chat_template:
                    raise AmautaError(f"{path}: the GGUF has no chat template; use it through /v1/completions "
                                      "or register a profile with a template")
                # The GGUF's own bos/eos strings, which chat templates write.
                eos = llama.detokenize([llama.token_eos()], special=True).decode("utf-8", "replace")
                bos = llama.detokenize([llama.token_bos()], special=True).decode("utf-8", "replace")
                entry.template = Jinja2ChatFormatter(chat_template, eos_token=eos, bos_token=bos)
                entry.template_source = chat_template
            # The first evaluation pays one-time costs (paging the weights in, building compute graphs):
            # 1.5 s became 25 s here. Pay them now rather than in the first user's request.
            llama.create_completion(llama.tokenize(b"Hola, " * 32, add_bos=True), max_tokens=2, temperature=0.0)
            llama.reset()
            self.entries[model_id] = entry
            for name, lora_file in lora_files.items():
                entry.adapters[name] = _load_lora(llama, lora_file, name)
                self.adapter_of[name] = model_id
            lora_files = {}  # adapters go on the first model only

    @staticmethod
    def _prepare_adapters(spec: str, path: Path, profile: Any, adapters: dict[str, Path]) -> dict[str, Path]:
        """{adapter id: GGUF LoRA file} checked against the first GGUF (refusals before anything loads)."""
        from amauta.models.registry import profile_names
        from amauta.serve.gguf_lora import prepare_adapter, read_base

        model_id = profile.name if profile is not None else path.stem
        base = read_base(path, model_id, spec if spec in profile_names() else None)
        files = {}
        for name, adapter in adapters.items():
            if name == model_id:
                raise AmautaError(f"--adapter {name}: the name is already a model id; choose another name")
            files[name] = prepare_adapter(adapter, base)
        return files

    def base_of(self, model_id: str) -> str:
        """The base model id behind `model_id` (itself for a base model)."""
        if model_id in self.entries:
            return model_id
        if model_id in self.adapter_of:
            return self.adapter_of[model_id]
        ids = list(self.entries) + list(self.adapter_of)
        raise AmautaError(f"model '{model_id}' is not served here{did_you_mean(model_id, ids)}; "
                          f"served: {', '.join(ids)}")

    def cards(self) -> list[ModelCard]:
        def card(model_id: str, parent: str | None) -> ModelCard:
            e = self.entries[parent or model_id]
            return ModelCard(model_id, parent, e.llama.n_ctx(), self.name, ("greedy", "sampling"),
                             _profile_max_tokens(e.profile) if e.profile is not None else 256)

        return [card(i, None) for i in self.entries] + [card(a, b) for a, b in self.adapter_of.items()]

    def worker_key(self, model_id: str) -> str:
        return self.base_of(model_id)  # an adapter shares its base's llama.cpp context

    def loaded(self, model_id: str) -> Any:
        return None

    def settings(self, model_id: str, **overrides: Any):
        from amauta.chat.decoding import GenerationSettings

        profile = self.entries[self.base_of(model_id)].profile
        settings = GenerationSettings.from_profile(profile, **overrides)
        if "strategy" not in {k for k, v in overrides.items() if v is not None} and settings.strategy not in (
                "greedy", "sampling"):
            settings = settings.model_copy(update={"strategy": "greedy"})  # the profile's contrastive → greedy
        return settings

    def start(self, model_id: str, prompt_or_messages: Prompt, settings: Any,
              stop_event: threading.Event | None) -> Iterator[str]:
        return _LlamaRun(self, model_id, prompt_or_messages, settings, stop_event)


def _load_lora(llama: Any, lora_file: Path, name: str) -> Any:
    """llama.cpp's handle of a GGUF LoRA on `llama`'s weights (freed with the model). The binding's own
    `Llama(lora_path=...)` would load a second copy of the base per adapter; this keeps one."""
    import llama_cpp

    handle = llama_cpp.llama_adapter_lora_init(llama.model, str(lora_file).encode("utf-8"))
    if not handle:
        raise AmautaError(f"{lora_file}: llama.cpp could not load adapter '{name}' on {llama.model_path}")
    return handle


# --- vLLM --------------------------------------------------------------------------------------------

def vllm_command(models: Sequence[str], adapters: dict[str, Path] | None = None, *, host: str = "127.0.0.1",
                 port: int = 8000, api_key: str | None = None, extra: Sequence[str] = ()) -> list[str]:
    """vLLM's OpenAI server command for one base model (registry name or hub id) and its LoRA adapters.

    The base model is served under its Amauta name; each adapter under its own name, with
    `--max-lora-rank` raised to the largest rank among them (vLLM refuses adapters above it).
    """
    from amauta.models.load import adapter_dir
    from amauta.models.registry import get_profile, profile_names

    if len(models) != 1:
        raise AmautaError(f"--backend vllm serves one base model, got {len(models)}; start one server per model")
    spec = models[0]
    weights, name = spec, spec
    if spec in profile_names():
        source = get_profile(spec).source
        if source.startswith(("embedded:", "tiny:")):
            raise AmautaError(f"--backend vllm loads hub models on a GPU; '{spec}' is {source}. Use a hub model "
                              "(e.g. --model mistral-7b) or --backend llamacpp on a CPU")
        weights = source
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", weights,
               "--served-model-name", name, "--host", host, "--port", str(port)]
    if adapters:
        ranks, modules = [], []
        for adapter_name, path in adapters.items():
            folder = adapter_dir(path)
            config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
            ranks.append(int(config.get("r", 8)))
            modules.append(f"{adapter_name}={folder.resolve()}")
        command += ["--enable-lora", "--lora-modules", *modules, "--max-loras", str(len(modules)),
                    "--max-lora-rank", str(_vllm_rank(max(ranks)))]
    if api_key:
        command += ["--api-key", api_key]
    return command + list(extra)


def _vllm_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that holds `rank` (it takes 8, 16, 32, 64, 128, 256, 320, 512)."""
    for allowed in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= allowed:
            return allowed
    raise AmautaError(f"LoRA rank {rank} is above vLLM's largest (512)")


def exec_vllm(command: list[str]) -> None:
    """Replace this process with vLLM's server (it handles signals and its own shutdown)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise AmautaError("--backend vllm needs vLLM and a GPU: pip install vllm; the command would be: "
                          + shlex.join(command))
    os.execv(command[0], command)
