"""Cases 2-5: the seed's two requests (image by URL, image as base64), streaming, and stop token ids sent by
the client or applied by the server."""

import pytest

from smoke_tests.support import user_message

# NB: where only the prompt counts (prompt tokens compared), one generated token is enough; where the answer is
# compared, --max-tokens; a control that must run on past a forced stop runs CONTROL_TOKENS, more than the one
# token the stop allows (each generated token costs a decode step: these were most of a case's time).
PROMPT_ONLY = {"max_tokens": 1}
CONTROL_TOKENS = 4


def _assert_one_assistant_choice(resp):
    assert len(resp.choices) == 1, resp
    msg = resp.choices[0].message
    assert msg.role == "assistant", resp
    assert isinstance(msg.content, str), resp
    assert resp.choices[0].finish_reason in ("stop", "length"), resp
    return msg.content


def test_image_by_url(client, chat_kwargs, image):
    """Seed request 1: text + image_url by URL; the image must add prompt tokens over text alone."""
    hits_before = len(image.server.requests) if image.server else 0
    with_image = client.chat.completions.create(messages=user_message(image.url), **{**chat_kwargs, **PROMPT_ONLY})
    _assert_one_assistant_choice(with_image)
    if image.server:
        fetched = image.server.requests[hits_before:]
        assert fetched, "the server answered without fetching the image from the local image server"

    text_only = client.chat.completions.create(messages=user_message(), **{**chat_kwargs, **PROMPT_ONLY})
    _assert_one_assistant_choice(text_only)
    assert with_image.usage.prompt_tokens > text_only.usage.prompt_tokens, (
        f"image did not reach the prompt: {with_image.usage.prompt_tokens} prompt tokens with the image, "
        f"{text_only.usage.prompt_tokens} without"
    )


def test_image_as_base64_matches_url(client, chat_kwargs, image):
    """Seed request 2: the same bytes as a data: URL give the same prompt as fetching them by URL."""
    by_data = client.chat.completions.create(messages=user_message(image.data_url), **{**chat_kwargs, **PROMPT_ONLY})
    _assert_one_assistant_choice(by_data)
    by_url = client.chat.completions.create(messages=user_message(image.url), **{**chat_kwargs, **PROMPT_ONLY})
    assert by_data.usage.prompt_tokens == by_url.usage.prompt_tokens, (
        f"base64 prompt has {by_data.usage.prompt_tokens} tokens, URL prompt {by_url.usage.prompt_tokens}"
    )


def test_streaming_joins_into_the_message(client, chat_kwargs, image):
    stream = client.chat.completions.create(
        messages=user_message(image.data_url), stream=True, stream_options={"include_usage": True}, **chat_kwargs
    )
    chunks = list(stream)
    with_choices = [c for c in chunks if c.choices]
    assert with_choices, f"no chunk carried a choice: {chunks}"
    assert with_choices[0].choices[0].delta.role == "assistant"
    finished = [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason is not None]
    assert len(finished) == 1, f"expected exactly one finish_reason, got {finished}"
    streamed = "".join(c.choices[0].delta.content or "" for c in with_choices)

    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].completion_tokens >= 1, f"no usage chunk: {chunks[-1]}"

    # NB: temperature 0 on one request at a time is deterministic, so the non-streamed answer must match
    whole = client.chat.completions.create(messages=user_message(image.data_url), **chat_kwargs)
    assert streamed == whole.choices[0].message.content
    assert finished[0] == whole.choices[0].finish_reason
    assert usage[-1].completion_tokens == whole.usage.completion_tokens


def test_stop_token_ids_are_honoured(client, chat_kwargs, smoke, image):
    """Force the last stop id with logit_bias: the server must stop at once with finish_reason 'stop'.

    NB: a random-weight test model never emits a stop token by itself, hence the forced token. vLLM's
    `ignore_eos` makes the model's own EOS ids (generation_config) irrelevant, so only stop_token_ids can stop
    it; the control request without them must then run to max_tokens.
    """
    if not smoke.stop_token_ids:
        pytest.skip("no --stop-token-ids configured")
    forced = smoke.stop_token_ids[-1]
    max_tokens = CONTROL_TOKENS
    common = {**chat_kwargs, "max_tokens": max_tokens, "logit_bias": {str(forced): 100}}
    resp = client.chat.completions.create(
        messages=user_message(image.data_url),
        **{**common, "extra_body": {"stop_token_ids": list(smoke.stop_token_ids), "ignore_eos": True}},
    )
    assert resp.choices[0].finish_reason == "stop", resp
    assert resp.usage.completion_tokens <= 1, resp
    assert getattr(resp.choices[0], "stop_reason", forced) == forced, resp  # vLLM reports the stop id here

    control = client.chat.completions.create(
        messages=user_message(image.data_url), **{**common, "extra_body": {"ignore_eos": True}}
    )
    assert control.choices[0].finish_reason == "length", control
    assert control.usage.completion_tokens == max_tokens, control


def test_server_stop_ids_apply_without_extra_body(client, smoke, model, image):
    """The server's own stop ids (its generation config) end an answer although the request sends none.

    Each id is forced with logit_bias in a request without stop_token_ids: the server must stop at once. vLLM adds a
    generation config's eos_token_id to every request's stop ids unless the request sets ignore_eos, so the control
    with ignore_eos (and still no stop ids) runs to max_tokens: the stop came from the server's configuration.
    """
    max_tokens = CONTROL_TOKENS
    common = {"model": model, "temperature": 0, "max_tokens": max_tokens, "messages": user_message(image.data_url)}
    for forced in smoke.server_stop_token_ids:
        resp = client.chat.completions.create(logit_bias={str(forced): 100}, **common)
        choice = resp.choices[0]
        assert choice.finish_reason == "stop", (forced, resp)
        assert resp.usage.completion_tokens <= 1, (forced, resp)
        # NB: vLLM reports a stop id as stop_reason; the tokenizer's own eos stops with stop_reason None.
        assert getattr(choice, "stop_reason", forced) in (forced, None), (forced, resp)

    forced = smoke.server_stop_token_ids[-1]
    control = client.chat.completions.create(logit_bias={str(forced): 100}, extra_body={"ignore_eos": True}, **common)
    assert control.choices[0].finish_reason == "length", control
    assert control.usage.completion_tokens == max_tokens, control
