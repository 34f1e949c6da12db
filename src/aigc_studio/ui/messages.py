"""What a user reads when something is refused, in the page's language: the studio's own messages
(English, from the services) in Chinese where the table below knows them, and validation errors as
"the field's label: what is allowed, what was given"."""

from __future__ import annotations

import re

from .i18n import field_label, is_zh, text

# The studio's own error messages a UI user meets (services, registry, pull), in Chinese. A message that
# matches none stays in English: it still says what was wrong and what is allowed.
ERRORS_ZH: list[tuple[re.Pattern, str]] = [
    (re.compile(p, re.DOTALL), zh)
    for p, zh in [
        (r"The model '(.+)' does not exist; available: (.*)", "模型“{0}”不存在；可用的模型：{1}"),
        (r"a comparison takes (\d+)-(\d+) (text|image) models, got (\d+)", "对比需要 {0}-{1} 个模型，收到 {3} 个"),
        (r"each model may be compared once; (.+) is given more than once .*", "每个模型只能对比一次；{0} 重复了"),
        (
            r"an image comparison needs (\d+)-(\d+) models or a grid axis .*",
            "图像对比需要 {0}-{1} 个模型，或一个网格轴（如 cfg=3,7,11）",
        ),
        *[
            (
                rf"an arena battle needs two {kind} models and only (\d+) can run here \((.*)\); .*",
                f"竞技场对战需要两个{zh}模型，这里只有 {{0}} 个能运行（{{1}}）；请用 `aigc models pull` 或 "
                "`aigc models add-remote` 再添加一个",
            )
            for kind, zh in (("text", "文本"), ("image", "图像"))
        ],
        (r"a battle needs two different models, got '(.+)' twice", "对战需要两个不同的模型，“{0}”选了两次"),
        (
            r"battle '(.+)' already has its vote \((.+)\); a battle takes one vote",
            "对战 {0} 已经投过票（{1}）；每场只能投一票",
        ),
        (r"The model '(.+)' does not exist", "模型“{0}”不存在"),
        (
            r"no image model is installed: .*",
            "还没有安装图像模型：请在“模型”页从模型目录下载（如 sd-turbo），或添加本地的 .safetensors 模型文件。",
        ),
        (
            r"(.+) is not a file; give the path of a \.gguf, \.safetensors or \.ckpt model",
            "{0} 不是文件；请填写 .gguf、.safetensors 或 .ckpt 模型文件的路径",
        ),
        (
            r"(.+) is a folder with neither model_index\.json nor config\.json; .*",
            "{0} 文件夹中既没有 model_index.json 也没有 config.json；"
            "请填写 diffusers 模型文件夹或 transformers 因果语言模型文件夹",
        ),
        (
            r"(.+)/config\.json names no causal language model .*",
            "{0}/config.json 不是因果语言模型（architectures 须以 ForCausalLM 或 LMHeadModel 结尾）；"
            "只能添加文本生成模型",
        ),
        (
            r"(.+) has a config\.json but no weights .*",
            "{0} 有 config.json 但没有权重文件（*.safetensors 或 pytorch_model*.bin）",
        ),
        (
            r"(.+) has no tokenizer .*",
            "{0} 没有分词器文件（tokenizer.json、tokenizer.model 或 vocab.json）",
        ),
        (r"(.+) is not a GGUF file \(it does not start with 'GGUF'\)", "{0} 不是 GGUF 文件（开头不是“GGUF”）"),
        (r"(.+) is not a safetensors file \(its header is not one\)", "{0} 不是 safetensors 文件（文件头不符）"),
        (
            r"(.+) is neither a GGUF file \(text\) nor a \.safetensors/\.ckpt checkpoint \(image\)",
            "{0} 既不是 GGUF 文件（文本），也不是 .safetensors/.ckpt 模型（图像）",
        ),
        (r"the server at (\S+) cannot be reached: .*", "无法连接 {0} 的服务"),
        (r"the server at (\S+) refused the API key .*", "{0} 的服务拒绝了 API 密钥"),
        (
            r"the server at (\S+) does not list a model '(.+)'; it lists: (.*)",
            "{0} 的服务没有名为“{1}”的模型；它提供：{2}",
        ),
        (r"the environment variable (\S+) is not set", "环境变量 {0} 未设置"),
        (
            r"base_url must be an http:// or https:// URL .*",
            "基础 URL 必须以 http:// 或 https:// 开头，例如 http://127.0.0.1:8080/v1",
        ),
        (r"a model called '(.+)' already exists; .*", "已有名为“{0}”的模型；请换一个名称"),
        (r"(txt2img|img2img|inpaint|edit) needs an input image", "{0} 需要一张输入图像"),
        (r"inpainting needs a mask .*", "局部重绘需要蒙版：请在图像上涂抹需要重绘的区域"),
        (
            r"the mask is (\d+x\d+) but the image is (\d+x\d+); .*",
            "蒙版尺寸 {0} 与图像尺寸 {1} 不同；两者必须一致",
        ),
        (r"model '(.+)' cannot do (\w+).*", "模型“{0}”不支持 {1}"),
        (r"'(.+)' is not in the model catalog; known: (.*)", "“{0}”不在模型目录中；目录中有：{1}"),
        (
            r"could not reach the hub at (\S+) .*",
            "无法连接模型仓库 {0}：请检查网络连接（或把 HF_ENDPOINT 设为可访问的镜像），"
            "然后再次下载；已下载的部分会保留",
        ),
        (
            r"the repo (\S+) does not exist on (\S+) .*",
            "仓库 {0} 在 {1} 上不存在（或为私有）；模型目录中的条目有误，或 HF_ENDPOINT 指向的镜像没有它",
        ),
        (
            r"(\S+) on (\S+) is gated: .*",
            "{1} 上的 {0} 需要授权：请先在网站上接受其许可，再登录（hf auth login 或设置 HF_TOKEN）后重试",
        ),
        (r"the hub at (\S+) answered HTTP (\d+) for (\S+); .*", "模型仓库 {0} 对 {2} 返回 HTTP {1}；请稍后再次下载"),
        (r"the disk holding (.+) is full; .*", "{0} 所在的磁盘已满；请腾出空间后再次下载"),
        (r"HF_HUB_OFFLINE is set, .*", "已设置 HF_HUB_OFFLINE，无法下载；请取消该设置后再次下载"),
        (
            r"batch_size × width × height must be at most 16 megapixels per batch",
            "单批数量 × 宽度 × 高度 每批不能超过 1600 万像素",
        ),
        (
            r"(.+) is not an AUTOMATIC1111 install or its models folder: .*",
            "{0} 不是 AUTOMATIC1111 安装目录或其 models 文件夹：其中没有 Stable-diffusion 文件夹",
        ),
        (r"unknown (sampler|schedule type|hires upscaler) '(.*)'; valid: (.*)", "未知的取值“{1}”；可选：{2}"),
        # prompt craft (services/prompt_styles.py, dynamic_prompts.py)
        (r"no style (.+); the styles are: (.*)", "没有风格 {0}；现有风格：{1}"),
        (
            r"(.+?): unbalanced braces: '\}' at character (\d+) closes no '\{' .*",
            "{0}：花括号不成对：第 {1} 个字符处的“}}”没有对应的“{{”"
            "（动态提示词把 {{a|b}} 当作选项；要保留花括号请关闭动态提示词）",
        ),
        (
            r"(.+?): unbalanced braces: '\{' at character (\d+) is never closed .*",
            "{0}：花括号不成对：第 {1} 个字符处的“{{”没有闭合"
            "（动态提示词把 {{a|b}} 当作选项；要保留花括号请关闭动态提示词）",
        ),
        (
            r"(.+?): no wildcard file for __(.+?)__ \(looked for (.+)\); the wildcards are: (.*)",
            "{0}：找不到通配符 __{1}__ 的文件（查找了 {2}）；现有通配符：{3}",
        ),
        (
            r"(.+?): combinatorial mode gives more than (\d+) prompts from this template; .*",
            "{0}：全部组合会生成超过 {1} 条提示词；最多 {1} 条（请减少选项或通配符，或改用随机模式）",
        ),
        # editing and templates (services/editing.py, services/template_library.py)
        (
            r"the selection (\d+):(\d+) is outside the text, which has (\d+) characters; .*",
            "选区 {0}:{1} 超出了文字范围（全文共 {2} 个字符）；应满足 0 ≤ 起点 ≤ 终点 ≤ {2}",
        ),
        (r"the selection (\d+):(\d+) is empty; .*", "选区 {0}:{1} 是空的；请选中要处理的文字，或不选以处理全文"),
        (r"the selection (\d+):(\d+) holds only spaces; .*", "选区 {0}:{1} 只有空白；请选中要处理的文字"),
        (r"the operation 'tone' needs the tone to write in.*", "“改变语气”需要填写语气，例如正式、亲切、有说服力"),
        (
            r"the model '(.+)' writes English only, and this text is in Chinese: expect a poor answer; "
            r"for it, pull a model that writes it: (.*)",
            "模型“{0}”只会写英文，而这段文字是中文，效果会很差；请下载能写中文的模型：{1}",
        ),
        (
            r"the answer was cut short by the token limit or the model's context; .*",
            "回答因词元上限或模型上下文长度被截断，可能停在句子中间",
        ),
        (r"the model gave an empty answer; the text is unchanged", "模型的回答为空；文字没有改动"),
        (r"(.+): (\{.+\}) used but not declared under \[variables\]", "{0}：{1} 没有在 [variables] 中声明"),
        (r"(.+): variable (.+) declared but never used", "{0}：变量 {1} 已声明但没有使用"),
        (
            r"'(.+)' is a shipped template and cannot be deleted; .*",
            "“{0}”是内置模板，不能删除；可以修改它（你的副本会替换它，删除副本即可恢复）",
        ),
        (
            r"a user template '(.+)' already exists; .*",
            "已有自定义模板“{0}”；请勾选“替换同名的自定义模板”，或换一个名称",
        ),
        # running code (sandbox.py, services/code.py)
        (
            r"limits\.(\w+) must be at most (\S+) \(setting (\w+)\), got (\S+)",
            "限制 {0} 不能大于 {1}（设置项 {2}），当前为 {3}",
        ),
        (
            r"cannot run code: bubblewrap \(bwrap\) is not installed; .*",
            "无法运行代码：没有安装 bubblewrap（bwrap）；请安装它（Debian/Ubuntu：apt-get install bubblewrap）。"
            "工作室绝不在沙箱之外运行生成的代码。",
        ),
        (
            r"cannot run code: bubblewrap cannot create its container here \((.*)\); .*",
            "无法运行代码：bubblewrap 无法在此创建容器（{0}）；它需要非特权用户命名空间"
            "（sysctl kernel.unprivileged_userns_clone=1，或 user.max_user_namespaces > 0）。"
            "工作室绝不在沙箱之外运行生成的代码。",
        ),
        (r"cannot run code: the sandbox does not start \((.*)\)", "无法运行代码：沙箱无法启动（{0}）"),
        (
            r"cannot run (\w+): no interpreter at (.+); install Debian's (\S+) package",
            "无法运行 {0}：在 {1} 找不到解释器；请安装 Debian 的 {2} 软件包",
        ),
        (r"code must not be empty: give the new version's code", "代码不能为空：请写入新版本的代码"),
        (r"code must not be empty: give the program to run", "代码不能为空：请写入要运行的程序"),
        (r"code must be at most (\d+) characters, got (\d+)", "代码最多 {0} 个字符，当前为 {1} 个"),
        (r"prompt must be at most (\d+) characters, got (\d+)", "请求最多 {0} 个字符，当前为 {1} 个"),
        (
            r"the answer has no code block to run; ask again, or name the language \(python or javascript\)",
            "回答中没有可运行的代码块；请再问一次，或写明语言（python 或 javascript）",
        ),
        (
            r"version (\d+) is (.+) code; the sandbox runs (\w+) and (\w+) only \(.*\)",
            "版本 {0} 是 {1} 代码；沙箱只运行 {2} 和 {3}"
            "（选择 Python 或 JavaScript 后点“保存修改为新版本”，即可按该语言运行）",
        ),
        (
            r"(\S+) code cannot be run: the sandbox runs (\w+) and (\w+); leave out run, or choose one of them",
            "{0} 代码无法运行：沙箱只运行 {1} 和 {2}；请不要自动运行，或选择其中一种语言",
        ),
        (r"no code session with id '(.+)' \(see `aigc code list`\)", "没有 id 为“{0}”的代码会话"),
        (r"no code version with id (\d+) .*", "没有 id 为 {0} 的代码版本"),
        (r"the model failed: (.*)", "模型出错：{0}"),
        (r"cannot run this code: (.*)", "无法运行这段代码：{0}"),
        # Inspect
        (
            r"(.+?) is not a file inspect can read; send an image .*",
            "文件 {0} 无法检测：请提供图像（PNG、JPEG 或 WebP）或文本文件（.md、.html、.txt、.docx）",
        ),
        (r"the file ?(.*) is empty; send .*", "文件 {0} 是空的：请提供图像或文本文件"),
        (
            r"file is (\d+)x(\d+) \((\d+) megapixels\); the limit is (\d+) megapixels .*",
            "图像为 {0}x{1}（{2} 百万像素），超过上限 {3} 百万像素（设置 max_image_megapixels）",
        ),
    ]
]


def message_text(lang: str | None, message: str) -> str:
    """A studio error message (English, from a service) in ``lang``, where the table knows it."""
    if is_zh(lang):
        for pattern, zh in ERRORS_ZH:
            if match := pattern.fullmatch(message):
                return zh.format(*match.groups())
    return message


_LIMITS = {
    "less_than_equal": ("v_le", "le"),
    "greater_than_equal": ("v_ge", "ge"),
    "less_than": ("v_lt", "lt"),
    "greater_than": ("v_gt", "gt"),
    "multiple_of": ("v_multiple_of", "multiple_of"),
    "string_too_long": ("v_max_length", "max_length"),
    "too_long": ("v_max_items", "max_length"),
}
_KINDS = {"int_parsing": "v_integer", "int_type": "v_integer", "int_from_float": "v_integer", "missing": "v_missing"}


def validation_text(lang: str | None, errors: list[dict]) -> str:
    """Pydantic errors as a user reads them: the field's label, what is allowed, what was given
    ("Width: must be a multiple of 8, got 513")."""
    parts = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        ctx, kind, given = err.get("ctx") or {}, err["type"], err.get("input")
        if kind in _LIMITS:
            key, limit = _LIMITS[kind]
            value = ctx.get(limit)
            what = text(lang, key, limit=int(value) if isinstance(value, float) and value.is_integer() else value)
        elif kind in _KINDS:
            what = text(lang, _KINDS[kind])
        elif kind.startswith("float"):
            what = text(lang, "v_number")
        else:
            what, given = message_text(lang, err["msg"].removeprefix("Value error, ")), None
        if given is not None and not isinstance(given, (dict, list)) and kind != "string_too_long":
            what = text(lang, "v_got", what=what, got=given)
        parts.append(text(lang, "v_field", field=field_label(lang, loc[0]), what=what) if loc else what)
    return ("；" if is_zh(lang) else "; ").join(parts)
