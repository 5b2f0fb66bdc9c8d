"""What an OpenAI request may ask of the model server: the fields passed on, their types and their limits.

Only the fields listed here reach vLLM; any other is a 400 naming it (OpenAI's own API answers an
unknown argument the same way). Refusing rather than dropping: a client that sends ``best_of`` to the
chat route, or misspells ``max_tokens``, learns at once that it had no effect, and vLLM's own extras
that cost work or reach outside the request (``chat_template``, ``prompt_logprobs``, ``priority``,
image and audio URLs that vLLM would fetch) never pass by accident when vLLM adds more of them.

Every field the gateway reads is type-checked here, so nothing later fails on a wrong type; fields it
only passes on (temperature, ...) are type-checked too, cheaply, and range-checked by vLLM. What a
request may cost is bounded by ``n``/``best_of``, list prompts, ``logprobs``/``top_logprobs``,
``min_tokens``, ``ignore_eos``, the stop sequences, ``logit_bias``, and the tools' and names' sizes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.errors import ApiError
from gateway.settings import Settings

COMMON_FIELDS = frozenset({
    "model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "n", "stop",
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "seed", "user",
    # vLLM's sampling extras that cost nothing beyond what max_tokens already bounds
    "top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos", "stop_token_ids",
    "skip_special_tokens", "include_stop_str_in_output",
})
CHAT_FIELDS = COMMON_FIELDS | {
    "messages", "max_completion_tokens", "top_logprobs", "response_format", "tools", "tool_choice",
    "parallel_tool_calls",
}
COMPLETION_FIELDS = COMMON_FIELDS | {"prompt", "best_of", "echo"}
MESSAGE_FIELDS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id"})
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
NUMBER_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "min_p",
                 "repetition_penalty")
INTEGER_FIELDS = ("seed", "top_k")
BOOLEAN_FIELDS = ("skip_special_tokens", "include_stop_str_in_output", "parallel_tool_calls", "echo")
# The chat template's own tokens around each message, and around the conversation: an allowance, so
# that the prompt's upper bound in tokens stays an upper bound.
TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS = 16


@dataclass(frozen=True, slots=True)
class Shape:
    """What a checked request asks for, for the rate limit and the default max_tokens."""

    completions: int  # sequences generated: n (or best_of) for each prompt
    prompt_bytes: int  # UTF-8 bytes of all prompt text (messages, tools)
    prompt_token_ids: int  # prompts given as token ids
    longest_prompt_tokens: int  # an upper bound on one prompt's length in tokens

    @property
    def prompt_tokens_estimate(self) -> int:
        return -(-self.prompt_bytes // 4) + self.prompt_token_ids


def _invalid(message: str, param: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bounded_int(payload: dict[str, Any], field: str, low: int, high: int) -> int | None:
    value = payload.get(field)
    if value is None:
        return None
    if not _integer(value):
        raise _invalid(f"'{field}' must be an integer.", field, "invalid_type")
    if not low <= value <= high:
        raise _invalid(f"'{field}' is {value}; this gateway allows {low} to {high}.", field)
    return int(value)


def _json_chars(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False))


def _name(value: Any, param: str, settings: Settings) -> None:
    if not isinstance(value, str):
        raise _invalid(f"'{param}' must be a string.", param, "invalid_type")
    if len(value) > settings.max_name_chars:
        raise _invalid(f"'{param}' is longer than {settings.max_name_chars} characters.", param,
                       "name_too_long")


def _function_name(item: Any, param: str, settings: Settings) -> dict[str, Any]:
    """``item["function"]["name"]`` checked; returns the function object."""
    if not isinstance(item, dict) or not isinstance(item.get("function"), dict):
        raise _invalid(f"'{param}' must be an object with a 'function' object.", param, "invalid_type")
    function = item["function"]
    _name(function.get("name"), f"{param}.function.name", settings)
    return function


def check_unknown(payload: dict[str, Any], allowed: frozenset[str]) -> None:
    for field in payload:
        if field not in allowed:
            raise _invalid(f"Unrecognized request argument supplied: {field}", field, "unknown_parameter")


def _check_sampling(payload: dict[str, Any], settings: Settings) -> None:
    for field in NUMBER_FIELDS:
        if payload.get(field) is not None and not _number(payload[field]):
            raise _invalid(f"'{field}' must be a number.", field, "invalid_type")
    for field in INTEGER_FIELDS:
        if payload.get(field) is not None and not _integer(payload[field]):
            raise _invalid(f"'{field}' must be an integer.", field, "invalid_type")
    for field in BOOLEAN_FIELDS:
        if payload.get(field) is not None and not isinstance(payload[field], bool):
            raise _invalid(f"'{field}' must be a boolean.", field, "invalid_type")
    ignore_eos = payload.get("ignore_eos")
    if ignore_eos is not None and not isinstance(ignore_eos, bool):
        raise _invalid("'ignore_eos' must be a boolean.", "ignore_eos", "invalid_type")
    if ignore_eos and not settings.allow_ignore_eos:
        raise _invalid("'ignore_eos' is not allowed by this gateway.", "ignore_eos")
    _bounded_int(payload, "min_tokens", 0, settings.max_min_tokens)
    stop = payload.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(item, str) for item in stops):
            raise _invalid("'stop' must be a string or an array of strings.", "stop", "invalid_type")
        if len(stops) > settings.max_stop_sequences or any(len(item) > settings.max_message_chars
                                                            for item in stops):
            raise _invalid(f"'stop' allows at most {settings.max_stop_sequences} sequences.", "stop")
    stop_ids = payload.get("stop_token_ids")
    if stop_ids is not None:
        if not isinstance(stop_ids, list) or not all(_integer(item) for item in stop_ids):
            raise _invalid("'stop_token_ids' must be an array of integers.", "stop_token_ids", "invalid_type")
        if len(stop_ids) > settings.max_stop_sequences:
            raise _invalid(f"'stop_token_ids' allows at most {settings.max_stop_sequences} ids.",
                           "stop_token_ids")
    bias = payload.get("logit_bias")
    if bias is not None:
        if not isinstance(bias, dict) or not all(_number(value) for value in bias.values()):
            raise _invalid("'logit_bias' must map token ids to numbers.", "logit_bias", "invalid_type")
        if len(bias) > settings.max_logit_bias:
            raise _invalid(f"'logit_bias' allows at most {settings.max_logit_bias} entries.", "logit_bias")
    options = payload.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _invalid("'stream_options' must be an object.", "stream_options", "invalid_type")
    user = payload.get("user")
    if user is not None:
        _name(user, "user", settings)


def _text(content: Any, param: str) -> tuple[int, int]:
    """(characters, UTF-8 bytes) of a message's content: a string, or text parts only (the model reads
    text alone, and vLLM would fetch an image or audio URL given to it)."""
    if content is None:
        return 0, 0
    if isinstance(content, str):
        return len(content), len(content.encode())
    if not isinstance(content, list):
        raise _invalid(f"'{param}' must be a string or an array of text parts.", param, "invalid_type")
    chars = size = 0
    for index, part in enumerate(content):
        if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
                and set(part) <= {"type", "text"}):
            raise _invalid(f"'{param}[{index}]' must be a text part {{\"type\": \"text\", \"text\": str}}.",
                           f"{param}[{index}]", "invalid_type")
        chars += len(part["text"])
        size += len(part["text"].encode())
    return chars, size


def _check_messages(payload: dict[str, Any], settings: Settings) -> tuple[int, int]:
    """(prompt bytes, messages)."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("'messages' must be a non-empty array.", "messages",
                       "missing_required_parameter" if messages is None else "invalid_type")
    if len(messages) > settings.max_messages:
        raise _invalid(f"Too many messages: {len(messages)} > {settings.max_messages}.", "messages",
                       "too_many_messages")
    total = 0
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid("Each message must be an object.", param, "invalid_type")
        check_unknown_in(message, MESSAGE_FIELDS, param)
        if message.get("role") not in ROLES:
            raise _invalid(f"'{param}.role' must be one of {', '.join(sorted(ROLES))}.", f"{param}.role")
        chars, size = _text(message.get("content"), f"{param}.content")
        if chars > settings.max_message_chars:
            raise _invalid(f"Message {index} is longer than {settings.max_message_chars} characters.",
                           f"{param}.content", "message_too_long")
        total += size
        if "name" in message:
            _name(message["name"], f"{param}.name", settings)
        if message.get("tool_call_id") is not None:
            _name(message["tool_call_id"], f"{param}.tool_call_id", settings)
        calls = message.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list) or len(calls) > settings.max_tools:
                raise _invalid(f"'{param}.tool_calls' must be an array of at most {settings.max_tools}.",
                               f"{param}.tool_calls")
            for number, call in enumerate(calls):
                function = _function_name(call, f"{param}.tool_calls[{number}]", settings)
                arguments = function.get("arguments", "")
                if not isinstance(arguments, str) or len(arguments) > settings.max_message_chars:
                    raise _invalid(f"'{param}.tool_calls[{number}].function.arguments' must be a string of "
                                   f"at most {settings.max_message_chars} characters.",
                                   f"{param}.tool_calls[{number}].function.arguments")
                total += len(arguments.encode())
    return total, len(messages)


def check_unknown_in(item: dict[str, Any], allowed: frozenset[str], param: str) -> None:
    for field in item:
        if field not in allowed:
            raise _invalid(f"Unrecognized argument supplied: {param}.{field}", f"{param}.{field}",
                           "unknown_parameter")


def _check_tools(payload: dict[str, Any], settings: Settings) -> int:
    """Tools, tool_choice and response_format; returns their JSON size (it is part of the prompt)."""
    total = 0
    tools = payload.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or len(tools) > settings.max_tools:
            raise _invalid(f"'tools' must be an array of at most {settings.max_tools}.", "tools")
        for index, tool in enumerate(tools):
            _function_name(tool, f"tools[{index}]", settings)
        total += _json_chars(tools)
    choice = payload.get("tool_choice")
    if isinstance(choice, dict):
        _function_name(choice, "tool_choice", settings)
    elif choice is not None and not isinstance(choice, str):
        raise _invalid("'tool_choice' must be a string or an object.", "tool_choice", "invalid_type")
    response_format = payload.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, dict):
            raise _invalid("'response_format' must be an object.", "response_format", "invalid_type")
        total += _json_chars(response_format)
    if total > settings.max_tools_chars:
        raise _invalid(f"'tools' and 'response_format' exceed {settings.max_tools_chars} characters.",
                       "tools" if tools is not None else "response_format", "tools_too_large")
    return total


def _check_prompt(payload: dict[str, Any], settings: Settings) -> tuple[int, int, int, int]:
    """(prompts, prompt bytes, prompt token ids, the longest prompt's tokens upper bound)."""
    prompt = payload.get("prompt")
    if prompt is None:
        raise _invalid("you must provide a prompt parameter", "prompt", "missing_required_parameter")
    if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and all(_integer(x) for x in prompt)):
        prompts: list[Any] = [prompt]
    elif isinstance(prompt, list) and prompt:
        prompts = prompt
    else:
        raise _invalid("'prompt' must be a string, an array of strings, or token ids.", "prompt",
                       "invalid_type")
    if len(prompts) > settings.max_prompts:
        raise _invalid(f"Too many prompts: {len(prompts)} > {settings.max_prompts}.", "prompt",
                       "too_many_prompts")
    text_bytes = token_ids = longest = 0
    for item in prompts:
        if isinstance(item, str):
            size = len(item.encode())
            text_bytes += size
            longest = max(longest, size)
            too_long = len(item) > settings.max_message_chars
        elif isinstance(item, list) and all(_integer(x) for x in item):
            token_ids += len(item)
            longest = max(longest, len(item))
            too_long = len(item) > settings.max_message_chars
        else:
            raise _invalid("Each prompt must be a string or an array of token ids.", "prompt", "invalid_type")
        if too_long:
            raise _invalid(f"The prompt is longer than {settings.max_message_chars} characters.", "prompt",
                           "message_too_long")
    return len(prompts), text_bytes, token_ids, longest + TEMPLATE_TOKENS


def check_request(payload: dict[str, Any], kind: str, settings: Settings) -> Shape:
    """Check a chat (``kind == "chat"``) or legacy completions request; the model and stream fields are
    checked by the caller. Raises ApiError 400."""
    check_unknown(payload, CHAT_FIELDS if kind == "chat" else COMPLETION_FIELDS)
    _check_sampling(payload, settings)
    n = _bounded_int(payload, "n", 1, settings.max_n) or 1
    if kind == "chat":
        logprobs = payload.get("logprobs")
        if logprobs is not None and not isinstance(logprobs, bool):
            raise _invalid("'logprobs' must be a boolean.", "logprobs", "invalid_type")
        _bounded_int(payload, "top_logprobs", 0, settings.max_logprobs)
        prompt_bytes, messages = _check_messages(payload, settings)
        prompt_bytes += _check_tools(payload, settings)
        upper = prompt_bytes + TEMPLATE_TOKENS_PER_MESSAGE * messages + TEMPLATE_TOKENS
        return Shape(completions=n, prompt_bytes=prompt_bytes, prompt_token_ids=0,
                     longest_prompt_tokens=upper)
    _bounded_int(payload, "logprobs", 0, settings.max_logprobs)
    best_of = _bounded_int(payload, "best_of", 1, settings.max_n) or 1
    prompts, text_bytes, token_ids, longest = _check_prompt(payload, settings)
    return Shape(completions=prompts * max(n, best_of), prompt_bytes=text_bytes, prompt_token_ids=token_ids,
                 longest_prompt_tokens=longest)
