"""The two snippets of the user's guide (shared seed: vllm-api-server.md), run as a script.

Verbatim except the values the guide tells the reader to fill in, which come from the environment:
    SMOKE_API_KEY (or VLLM_API_KEY)  openai_api_key   (guide: "token-abc123")
    SMOKE_BASE_URL                   openai_api_base  (guide: http://localhost:8000; "/v1" is appended)
    SMOKE_MODEL                      model            (guide: /root/ld/ld_model_pretrained/Minicpmv2_6)
    SMOKE_IMAGE_URL                  the image URL    (guide: the stop-sign JPEG on S3)
    SMOKE_IMAGE_PATH                 the local picture path of snippet 2

Usage: python smoke_tests/seed_snippets.py [1|2]   (default: both, in order)
"""

import os
import sys

SEED_API_KEY = os.environ.get("SMOKE_API_KEY") or os.environ.get("VLLM_API_KEY") or "token-abc123"
SEED_API_BASE = os.environ.get("SMOKE_BASE_URL", "http://localhost:8000").rstrip("/").removesuffix("/v1") + "/v1"
SEED_MODEL = os.environ.get("SMOKE_MODEL", "/root/ld/ld_model_pretrained/Minicpmv2_6")
SEED_IMAGE_URL = os.environ.get(
    "SMOKE_IMAGE_URL", "https://air-example-data-2.s3.us-west-2.amazonaws.com/vllm_opensource_llava/stop_sign.jpg"
)
SEED_IMAGE_PATH = os.environ.get("SMOKE_IMAGE_PATH", "your/local/pic/path")


def snippet_1():
    # ---- 1. 传入网络图片 (verbatim from the guide, except the SEED_* values)
    from openai import OpenAI

    # 设置API密钥和基础URL
    openai_api_key = SEED_API_KEY  # 在启动服务时设置的API密钥
    openai_api_base = SEED_API_BASE  # HTTP接口地址

    # 创建客户端实例
    client = OpenAI(
        api_key=openai_api_key,
        base_url=openai_api_base,
    )

    # 创建聊天完成请求
    chat_response = client.chat.completions.create(
        model=SEED_MODEL,  # 模型本地路径或Hugging Face ID
        messages=[
            {
                "role": "user",
                "content": [
                    # NOTE: 使用图像令牌 <image> 的提示格式是不必要的，因为提示将由API服务器自动处理。
                    # 由于提示将由API服务器自动处理，因此不需要使用包含 <image> 图像令牌的提示格式。
                    {"type": "text", "text": "请描述这张图片"},
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": SEED_IMAGE_URL,
                        },
                    },
                ],
            }
        ],
        extra_body={"stop_token_ids": [151645, 151643]},
    )

    print("Chat response:", chat_response)
    print("Chat response content:", chat_response.choices[0].message.content)


def snippet_2():
    # ---- 2. 传入本地图片 (verbatim from the guide, except the SEED_* values)
    import base64

    from openai import OpenAI

    # 设置API密钥和基础URL
    openai_api_key = SEED_API_KEY  # 在启动服务时设置的API密钥
    openai_api_base = SEED_API_BASE  # HTTP接口地址

    # 创建客户端实例
    client = OpenAI(
        api_key=openai_api_key,
        base_url=openai_api_base,
    )

    # 用于传本地图片
    with open(SEED_IMAGE_PATH, "rb") as file:
        image = "data:image/jpeg;base64," + base64.b64encode(file.read()).decode("utf-8")

    # 创建聊天完成请求
    chat_response = client.chat.completions.create(
        model=SEED_MODEL,  # 模型本地路径或Hugging Face ID
        messages=[
            {
                "role": "user",
                "content": [
                    # NOTE: 使用图像令牌 <image> 的提示格式是不必要的，因为提示将由API服务器自动处理。
                    # 由于提示将由API服务器自动处理，因此不需要使用包含 <image> 图像令牌的提示格式。
                    {"type": "text", "text": "请描述这张图片"},
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": image,
                        },
                    },
                ],
            }
        ],
        extra_body={"stop_token_ids": [151645, 151643]},
    )

    print("Chat response:", chat_response)
    print("Chat response content:", chat_response.choices[0].message.content)


def _serve(snippets):
    """The suite's seed server (smoke_tests/seed_runs.py): what the snippets load is loaded once, then each request
    line on stdin ({"snippet", "stdout", "stderr"}) runs one snippet in a process of its own, forked from this
    one, its output in the two files named; one answer line ({"snippet", "exit"}) each. Ends at end of input."""
    import json
    import subprocess
    import traceback

    # NB: what the snippets load (openai, its chat resources and HTTP transport: ~1 s of CPU per process) is
    # loaded before the first request, with a client that sends nothing; the snippets, unchanged, run on request.
    # openai's aiohttp transport (its async clients' only, imported whenever aiohttp is installed) is left out.
    sys.modules.setdefault("openai._vendor.httpx_aiohttp", None)  # type: ignore[arg-type]
    import openai

    openai.OpenAI(api_key="unused", base_url=SEED_API_BASE).chat.completions  # noqa: B018
    for line in sys.stdin:
        request = json.loads(line)
        name, out, err = request["snippet"], request["stdout"], request["stderr"]
        sys.stdout.flush()
        sys.stderr.flush()
        if not hasattr(os, "fork"):  # NB: no fork (Windows): the snippet runs in a fresh interpreter instead
            env = {k: v for k, v in os.environ.items() if k != "SMOKE_SEED_WAIT_FOR_GO"}
            with open(out, "wb") as stdout, open(err, "wb") as stderr:
                code = subprocess.run(
                    [sys.executable, __file__, name], stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env
                ).returncode
        elif (pid := os.fork()) == 0:
            code = 1
            try:
                for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, out, os.O_WRONLY), (2, err, os.O_WRONLY)):
                    opened = os.open(path, flags | (os.O_CREAT | os.O_TRUNC if fd else 0), 0o600)
                    os.dup2(opened, fd)
                    os.close(opened)
                try:
                    snippets[name]()
                    code = 0
                except SystemExit as exc:  # as the interpreter would end a script
                    code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
                    if not isinstance(exc.code, (int, type(None))):
                        print(exc.code, file=sys.stderr)
                except BaseException:
                    traceback.print_exc()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)  # NB: the child never returns into the loop, whatever happened
        else:
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        print(json.dumps({"snippet": name, "exit": code}), flush=True)


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["1", "2"]
    if os.environ.get("SMOKE_SEED_WAIT_FOR_GO") == "1":
        _serve({"1": snippet_1, "2": snippet_2})
        chosen = []
    for name in chosen:
        {"1": snippet_1, "2": snippet_2}[name]()
    # NB: the interpreter's final garbage collection over what openai loaded took 0.3 s of every run; objects
    # are still released as usual, the exit is a normal one.
    import gc

    gc.freeze()
