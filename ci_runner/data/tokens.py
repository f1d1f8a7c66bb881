"""Token counts as transformers gives them, from ``tokenizer.json`` and jinja2 alone.

``check-data`` and ``plan`` need the lengths of a few dozen examples in the base
model's tokens. Loading the tokenizer through transformers costs seconds of imports and
hundreds of MB for that. Here the same counts come from the two libraries transformers
itself delegates to:

- ``tokenizers`` encodes, from the model's ``tokenizer.json``, with the added and
  special tokens of ``tokenizer_config.json`` reconciled as transformers does on load;
- ``jinja2`` renders the chat template (``chat_template.jinja``, else the config's
  ``chat_template``) in a sandbox set up like ``transformers.utils.chat_template_utils``:
  ``trim_blocks``, ``lstrip_blocks``, ``loopcontrols``, a ``{% generation %}`` tag, the
  ``tojson`` filter (no HTML escaping), ``raise_exception``, ``strftime_now``, and the
  special tokens (``bos_token``, ``eos_token``...) as template variables.

A rendered chat is encoded without adding special tokens: the template writes them,
as ``apply_chat_template(tokenize=True)`` assumes. Plain text is encoded with the
``tokenizer.json`` post-processor, as ``tokenizer(text)`` does.

Both libraries are imported only when a tokenizer is loaded, never at CLI start-up.
Matched against transformers 5.23 (tests/test_tokens.py); what is not replicated: the
Mistral regex patch transformers applies to some >100k vocabularies, a model class's
default special tokens when the config omits them, and ``sanitize_control_tokens``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from ci_runner.job_scripts.shaping import Tokenized

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"  # transformers 5 saves the template here
TEMPLATE_DIR = "additional_chat_templates"  # named templates, one .jinja each
# What check-data reads of a Hub model; chat_template.jinja may well be absent.
HUB_FILES = (TOKENIZER_FILE, CONFIG_FILE, TEMPLATE_FILE)

# transformers' SPECIAL_TOKENS_ATTRIBUTES: the named tokens templates see as variables.
NAMED_SPECIAL_TOKENS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
# A message's reasoning goes by these names; templates read the first (Qwen3) or "thinking".
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


class ChatTokenizer:
    """A model's tokenizer for counting: ``tokenizer.json`` plus its config and template.

    ``backend`` is a ``tokenizers.Tokenizer``; ``config`` the parsed
    ``tokenizer_config.json``; ``chat_template`` a template, or ``{name: template}``.
    """

    def __init__(
        self,
        backend: Any,
        config: Mapping[str, Any] | None = None,
        chat_template: str | Mapping[str, str] | None = None,
        *,
        name: str = "",
    ) -> None:
        self.name = name
        self.config = dict(config or {})
        if chat_template is None:
            chat_template = _config_templates(self.config)
        self.chat_templates = (
            dict(chat_template) if isinstance(chat_template, Mapping) else chat_template
        )
        self.special_tokens_map = special_tokens_map(self.config)
        self.backend = _reconciled(backend, self.config, self.special_tokens_map)

    @classmethod
    def from_dir(cls, folder: str | os.PathLike[str]) -> ChatTokenizer:
        """Load from a model folder or a Hub cache snapshot; it must hold ``tokenizer.json``."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        backend = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        config_path = folder / CONFIG_FILE
        config = (
            json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        )
        return cls(backend, config, _file_templates(folder), name=str(folder))

    @property
    def chat_template(self) -> str | None:
        """The template ``apply_chat_template`` uses without a ``chat_template`` argument.

        With several named templates that is ``default``; without one transformers
        refuses, and this counts the messages as plain text instead.
        """
        templates = self.chat_templates
        if isinstance(templates, dict):
            return templates.get("default")
        return templates or None

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """``tokenizer(text)["input_ids"]`` (or ``.encode``): the post-processor adds BOS/EOS."""
        ids: list[int] = self.backend.encode(text, add_special_tokens=add_special_tokens).ids
        return ids

    def render_chat(
        self,
        messages: list[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = False,
        tools: list[Mapping[str, Any]] | None = None,
        documents: list[Mapping[str, Any]] | None = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> str:
        """``apply_chat_template(messages, tokenize=False, ...)``; kwargs reach the template."""
        template = chat_template or self.chat_template
        if isinstance(self.chat_templates, dict) and tools is not None and not chat_template:
            template = self.chat_templates.get("tool_use", template)
        if not template:
            raise ValueError(f"{self.name or 'this tokenizer'} has no chat template")
        # transformers drops None-valued keys first: templates handle a missing key, not None
        chat: list[Mapping[str, Any]] = [
            {k: v for k, v in m.items() if v is not None} for m in messages
        ]
        return render_chat_template(
            template,
            chat,
            add_generation_prompt=add_generation_prompt,
            tools=tools,
            documents=documents,
            **{**self.special_tokens_map, **kwargs},
        )

    def encode_chat(self, messages: list[Mapping[str, Any]], **kwargs: Any) -> list[int]:
        """``apply_chat_template(messages, tokenize=True, ...)["input_ids"]``.

        The template writes the special tokens, so none are added on top.
        """
        return self.encode(self.render_chat(messages, **kwargs), add_special_tokens=False)

    def count(self, messages: list[Mapping[str, Any]]) -> int:
        """Tokens of one example, as ``ci_runner.data.lengths`` counts it.

        Through the chat template when there is one (what TRL feeds the model); else the
        contents joined by newlines, as plain text. An empty conversation counts 0
        (transformers refuses one; a data check must not stop on it).
        """
        if not messages:
            return 0
        if self.chat_template:
            return len(self.encode_chat(messages))
        text = "\n".join(str(m.get("content", "")) for m in messages)
        return len(self.encode(text))

    def count_input(self, item: Tokenized) -> int:
        """Tokens of one input TRL tokenizes (``shaping.trainer_inputs``): plain text with
        the tokenizer's special tokens, a chat through the template with its tools."""
        if item.text is not None:
            return len(self.encode(item.text))
        messages: list[Mapping[str, Any]] = list(item.messages or [])
        if not messages or not self.chat_template:
            return self.count(messages)
        ids = self.encode_chat(
            messages, add_generation_prompt=item.add_generation_prompt, tools=item.tools
        )
        return len(ids)


# --- configuration ---------------------------------------------------------------


def _token_content(value: Any) -> str | None:
    """A special token as the config writes it: a string, or an AddedToken dict."""
    if isinstance(value, str):
        return value
    content = value.get("content") if isinstance(value, Mapping) else None
    return content if isinstance(content, str) else None


def special_tokens_map(config: Mapping[str, Any]) -> dict[str, str]:
    """``tokenizer.special_tokens_map``: named tokens plus model-specific ``*_token`` keys."""
    tokens = {}
    for key, value in config.items():
        content = _token_content(value)
        if key.endswith("_token") and content is not None:
            tokens[key] = content
    extra = config.get("extra_special_tokens")
    if isinstance(extra, Mapping):  # named extras, e.g. {"image_token": "<image>"}
        tokens.update({k: c for k, v in extra.items() if (c := _token_content(v)) is not None})
    return tokens


def _extra_special_tokens(config: Mapping[str, Any]) -> list[Any]:
    extra = config.get("extra_special_tokens")
    if not extra:  # transformers 5 reads the older name when the new one is empty
        extra = config.get("additional_special_tokens")
    if isinstance(extra, Mapping):
        return list(extra.values())
    return list(extra) if isinstance(extra, (list, tuple)) else []


def _added_token(value: Any, *, special: bool | None = None) -> Any:
    from tokenizers import AddedToken

    if isinstance(value, str):
        return AddedToken(value, special=True, normalized=False)
    fields = {k: value[k] for k in ("single_word", "lstrip", "rstrip", "normalized") if k in value}
    return AddedToken(
        value["content"],
        special=value.get("special", False) if special is None else special,
        **fields,
    )


def _reconciled(backend: Any, config: Mapping[str, Any], named: Mapping[str, str]) -> Any:
    """The backend as transformers leaves it after ``from_pretrained``.

    transformers adds the config's ``added_tokens_decoder`` entries, then every named
    and extra special token, to the ``tokenizer.json`` pipeline; ``tokenizers`` skips
    those it already has, so for most models this changes nothing. It also takes
    ``split_special_tokens`` from the config. Truncation and padding saved in the file
    are switched off: ``apply_chat_template`` and ``tokenizer(text)`` don't apply them
    by default, and a count must not be cut.
    """
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, Mapping):
        entries = sorted(decoder.items(), key=lambda item: int(item[0]))
        tokens = [_added_token(v) for _, v in entries if _token_content(v) is not None]
        if tokens:
            backend.add_tokens(tokens)
    special = []
    for key in (*NAMED_SPECIAL_TOKENS, *(k for k in named if k not in NAMED_SPECIAL_TOKENS)):
        value = config.get(key, named.get(key))
        if _token_content(value) is not None:
            special.append(_added_token(value, special=True))
    special += [
        _added_token(v, special=True) for v in _extra_special_tokens(config) if _token_content(v)
    ]
    if special:
        backend.add_special_tokens(special)
    backend.encode_special_tokens = bool(config.get("split_special_tokens", False))
    backend.no_truncation()
    backend.no_padding()
    return backend


def _config_templates(config: Mapping[str, Any]) -> str | dict[str, str] | None:
    """``chat_template`` from the config: one string, or a list of ``{name, template}``."""
    template = config.get("chat_template")
    if isinstance(template, list):
        return {t["name"]: t["template"] for t in template if isinstance(t, Mapping)}
    return template if isinstance(template, str) else None


def _file_templates(folder: Path) -> str | dict[str, str] | None:
    """Templates saved as files, which take priority over the config's (as in transformers)."""
    templates = {}
    default = folder / TEMPLATE_FILE
    if default.is_file():
        templates["default"] = default.read_text(encoding="utf-8")
    extra = folder / TEMPLATE_DIR
    if extra.is_dir():
        for path in sorted(extra.glob("*.jinja")):
            templates[path.name.removesuffix(".jinja")] = path.read_text(encoding="utf-8")
    if list(templates) == ["default"]:
        return templates["default"]
    return templates or None


# --- chat templates --------------------------------------------------------------


def render_chat_template(
    template: str,
    messages: list[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = False,
    tools: list[Mapping[str, Any]] | None = None,
    documents: list[Mapping[str, Any]] | None = None,
    **context: Any,
) -> str:
    """Render one conversation as ``transformers.utils.chat_template_utils`` does.

    Everything the template sees is rebuilt from plain JSON-like values; a message's
    reasoning is offered under all of ``REASONING_FIELDS``.
    """
    chat = [_with_reasoning_aliases(m) for m in _plain(list(messages))]
    for message in chat:
        if not isinstance(message, dict):
            raise TypeError(f"chat messages must be dicts, got {message!r}")
    rendered: str = _compiled(template).render(
        messages=chat,
        tools=_plain(tools),
        documents=_plain(documents),
        add_generation_prompt=add_generation_prompt,
        **_plain(context),
    )
    return rendered


def _with_reasoning_aliases(message: Any) -> Any:
    if not isinstance(message, dict):
        return message
    reasoning = next((message[k] for k in REASONING_FIELDS if message.get(k) is not None), None)
    if reasoning is None:
        return message
    return {"thinking": reasoning, **message, "reasoning_content": reasoning}


def _plain(value: Any) -> Any:
    """Plain JSON-like data only: the sandbox must not meet objects with dangerous methods.

    Subclasses of str/int/float lose their methods, numpy scalars become Python ones,
    dataclasses and pydantic models dicts; anything else a ``<TypeName>`` placeholder,
    as in transformers (templates test media keys, never read their values).
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return _plain(value.item())  # np.bool_(False) must stay falsy
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):  # pydantic
        return _plain(value.model_dump())
    return f"<{type(value).__name__}>"


@lru_cache(maxsize=16)
def _compiled(template: str) -> Any:
    return _environment().from_string(template)


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        """``{% generation %}…{% endgeneration %}`` marks assistant text; it renders as is."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            body: str = caller()
            return body

    class SafeNamespace(jinja2.utils.Namespace):
        """``namespace()`` without underscore attributes, as transformers restricts it."""

        def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - jinja2's own signature
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for key in attrs:
                _public_name(key)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            _public_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

    def _public_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates cannot set underscore attributes on a namespace: {name!r}"
            )

    class DictFactory:
        """``dict(...)`` and ``dict.fromkeys(...)`` without exposing the type itself."""

        def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
            return dict(*args, **kwargs)

        def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
            return dict.fromkeys(*args, **kwargs)

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        value: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators: tuple[str, str] | None = None,
        sort_keys: bool = False,
    ) -> str:
        # Unlike jinja2's own filter: no HTML escaping, and json.dumps' options exposed.
        return json.dumps(
            value,
            ensure_ascii=ensure_ascii,
            indent=indent,
            separators=separators,
            sort_keys=sort_keys,
        )

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals.update(
        raise_exception=raise_exception,
        strftime_now=strftime_now,
        dict=DictFactory(),
        namespace=SafeNamespace,
    )
    return env


# --- where a model's tokenizer files are -----------------------------------------


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cached_hub_file(repo_id: str, filename: str) -> Path | None:
    """``repo_id``'s ``filename`` in the HF cache (its ``main`` snapshot), if there; no network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        path = try_to_load_from_cache(repo_id, filename)
    except Exception:  # noqa: BLE001 - a malformed id or cache: nothing cached
        return None
    return Path(path) if isinstance(path, str) else None


def download_tokenizer_files(repo_id: str, *, api: Any | None = None) -> Path | None:
    """Fetch ``HUB_FILES`` into the HF cache and return their snapshot folder, else None.

    Only ``tokenizer.json`` is required (often several MB: 11 MB for Qwen3); the config
    and a separate ``chat_template.jinja`` are small and may be absent. Never called
    when ``HF_HUB_OFFLINE`` is set. Any Hub error (gated, missing, network) gives None.
    """
    if _hub_offline():
        return None
    if api is None:
        from ci_runner.core.hub import hub_api

        api = hub_api()
    from huggingface_hub.errors import EntryNotFoundError

    folder = None
    for filename in HUB_FILES:
        try:
            path = Path(api.hf_hub_download(repo_id, filename))
        except EntryNotFoundError:
            if filename == TOKENIZER_FILE:
                return None
            continue
        except Exception:  # noqa: BLE001 - gated, offline, 5xx...: count without it
            return None
        folder = folder or path.parent
    return folder


def find_tokenizer_dir(
    base_model: str, *, root: Path, download: bool = True, api: Any | None = None
) -> Path | None:
    """The folder with ``base_model``'s ``tokenizer.json``: local, cached, or just fetched.

    A local model is read in place. A Hub model comes from the HF cache; if it is not
    there and ``download`` is set (and ``HF_HUB_OFFLINE`` isn't), its tokenizer files
    are fetched. None when there is no ``tokenizer.json`` to be had.
    """
    from ci_runner.core.hub import is_local_path, local_path

    if is_local_path(base_model):
        folder = local_path(base_model, root)
        return folder if (folder / TOKENIZER_FILE).is_file() else None
    cached = cached_hub_file(base_model, TOKENIZER_FILE)
    cached_dir = cached.parent if cached else None
    if cached_dir is not None and (cached_dir / CONFIG_FILE).is_file():
        return cached_dir
    # Not cached, or cached without its config (and so maybe without its chat template).
    fetched = download_tokenizer_files(base_model, api=api) if download else None
    return fetched or cached_dir


def load_chat_tokenizer(
    base_model: str, *, root: Path, download: bool = True, api: Any | None = None
) -> ChatTokenizer | None:
    """``base_model``'s tokenizer for counting, or None when it has no ``tokenizer.json``."""
    folder = find_tokenizer_dir(base_model, root=root, download=download, api=api)
    if folder is None:
        return None
    try:
        return ChatTokenizer.from_dir(folder)
    except Exception:  # noqa: BLE001 - unreadable files: the caller falls back
        return None
