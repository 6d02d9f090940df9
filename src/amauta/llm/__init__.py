"""One way to ask a language model: local (`LocalLLM`) or any OpenAI-compatible endpoint, plus JSON replies.

`make_llm` picks the client; `ask_json` extracts, repairs and retries JSON answers; `fake_server` is an
OpenAI-compatible test server on loopback.
"""

from amauta.llm.client import LLM, LocalLLM, OpenAICompatibleLLM, make_llm
from amauta.llm.json_reply import JsonExtractionError, JsonReply, ask_json, extract_json, repair_json
from amauta.llm.keys import api_key

__all__ = ["LLM", "JsonExtractionError", "JsonReply", "LocalLLM", "OpenAICompatibleLLM", "api_key", "ask_json",
           "extract_json", "make_llm", "repair_json"]
