"""Every label of the web UI in English and Simplified Chinese, from one table.

Static labels are sent to the browser as ``gr.I18n`` keys and translated there, so switching the
language needs no round trip; text a handler writes (progress, counts) goes through ``text(lang, key)``
with the language the page reports. The English help of each parameter is its declared description
(``ImageRequest``, ``TextOptions``, ``SETTINGS``); only the Chinese is written here. The studio's
messages in Chinese are in ``messages.py``; the page's language switch in ``page_script.py``.
"""

from __future__ import annotations

import gradio as gr

from ..config import SETTINGS
from ..contracts import MAX_STOP, ImageRequest, TextOptions
from .i18n_arena import LABELS as ARENA_LABELS
from .i18n_code import LABELS as CODE_LABELS
from .i18n_editing import LABELS as EDITING_LABELS
from .i18n_image_labels import LABELS as IMAGE_LABEL_LABELS

LANGUAGES = [("English", "en"), ("简体中文", "zh-CN")]

# key: (English, 简体中文)
TABLE: dict[str, tuple[str, str]] = {
    "tab_chat": ("Chat", "对话"),
    "tab_images": ("Images", "图像"),
    "tab_gallery": ("Gallery / History", "作品 / 历史"),
    "tab_models": ("Models", "模型"),
    "tab_inspect": ("Inspect", "检测"),
    # Inspect tab
    "ins_file": ("File to inspect", "要检测的文件"),
    "ins_help": (
        "Drop an image (PNG, JPEG, WebP) or a text file (.md, .html, .txt, .docx): its AI labels, C2PA "
        "credentials, watermark and A1111 parameters are read and checked here, nothing is uploaded elsewhere.",
        "拖入图像（PNG、JPEG、WebP）或文本文件（.md、.html、.txt、.docx）：在本机读取并核验其中的 AI 标识、"
        "C2PA 内容凭证、隐式水印和 A1111 参数，文件不会发往别处。",
    ),
    "ins_summary": ("Summary", "检测摘要"),
    "ins_report": ("Report (JSON)", "完整报告（JSON）"),
    "tab_settings": ("Settings", "设置"),
    # ready for the tabs that come next
    "tab_writing": ("Write", "写作"),
    "tab_code": ("Code", "代码"),
    "tab_compare": ("Compare", "对比"),
    "refresh": ("Refresh", "刷新"),
    # Compare tab
    "cmp_mode": ("Compare", "对比内容"),
    "cmp_mode_text": ("Text models", "文本模型"),
    "cmp_mode_image": ("Images", "图像"),
    "cmp_models": ("Models (2-4)", "模型（2-4 个）"),
    "cmp_image_models": ("Image models (2-4 for a row; 1 for a grid)", "图像模型（一行对比 2-4 个；网格 1 个）"),
    "cmp_system": ("System prompt", "系统提示词"),
    "cmp_grid_x": ("Grid X axis (name=v1,v2,...)", "网格 X 轴（参数=值1,值2,...）"),
    "cmp_grid_y": ("Grid Y axis (optional)", "网格 Y 轴（可选）"),
    "cmp_saved": ("Saved comparisons", "已保存的对比"),
    "cmp_open": ("Open", "打开"),
    "cmp_prompt": ("Prompt", "提示词"),
    "cmp_run": ("Compare", "开始对比"),
    "cmp_stop": ("Stop", "停止"),
    "cmp_row": ("Images", "图像"),
    "cmp_grid": ("Grid", "网格图"),
    "cmp_no_prompt": ("Write a prompt first.", "请先输入提示词。"),
    "cmp_pick_saved": ("Pick a saved comparison first.", "请先选择一个已保存的对比。"),
    "cmp_running": ("{n} models answering at once…", "{n} 个模型正在同时回答……"),
    "cmp_images_running": (
        "{done} of {total} images done (they run one after another)",
        "已完成 {done}/{total} 张图像（逐张生成）",
    ),
    "cmp_saved_as": ("Saved as {id}.", "已保存为 {id}。"),
    "cmp_reopened": ("{id}: {prompt}", "{id}：{prompt}"),
    "cmp_pane_running": ("answering…", "回答中……"),
    "cmp_pane_error": ("Error: {error}", "错误：{error}"),
    "cmp_stats": (
        "first token {ttft} ms · {speed} tok/s · {tokens} tokens · {finish}",
        "首个词元 {ttft} 毫秒 · {speed} 词元/秒 · {tokens} 个词元 · {finish}",
    ),
    "unset_ph": ("model default", "模型默认"),
    "kind_text": ("text", "文本"),
    "kind_image": ("image", "图像"),
    "role_user": ("You", "你"),
    "role_assistant": ("Assistant", "助手"),
    "role_system": ("System", "系统"),
    # Toast titles: Gradio writes its toast type ("Error", "Info") as the title; the page script swaps it.
    "toast_error": ("Error", "错误"),
    "toast_warning": ("Warning", "警告"),
    "toast_info": ("Info", "提示"),
    "toast_success": ("Success", "成功"),
    # messages about a value the user gave (validation): "{field}: {what}"
    "v_field": ("{field}: {what}", "{field}：{what}"),
    "v_got": ("{what}, got {got}", "{what}，当前为 {got}"),
    "v_le": ("must be at most {limit}", "不能大于 {limit}"),
    "v_ge": ("must be at least {limit}", "不能小于 {limit}"),
    "v_lt": ("must be less than {limit}", "必须小于 {limit}"),
    "v_gt": ("must be more than {limit}", "必须大于 {limit}"),
    "v_multiple_of": ("must be a multiple of {limit}", "必须是 {limit} 的倍数"),
    "v_max_length": ("must be at most {limit} characters long", "不能超过 {limit} 个字符"),
    "v_max_items": ("takes at most {limit} entries", "最多 {limit} 项"),
    "v_number": ("must be a number", "必须是数字"),
    "v_integer": ("must be a whole number", "必须是整数"),
    "v_missing": ("is required", "不能为空"),
    # write
    "w_title": ("Title or keywords", "标题或关键词"),
    "w_title_ph": ("e.g. AIGC and creating with large models", "例如：AIGC 与大模型创作实践"),
    "w_language": ("Article language", "文章语言"),
    "w_sections": ("Sections", "小节数"),
    "w_length": ("Length (words in English, characters in Chinese)", "篇幅（英文按词、中文按字计）"),
    "w_model": ("Model", "模型"),
    "w_more": ("Audience, tone, reference notes", "读者、语气、参考资料"),
    "w_audience": ("Audience", "读者"),
    "w_audience_ph": ("general readers", "普通读者"),
    "w_tone": ("Tone", "语气"),
    "w_tone_ph": ("clear and friendly", "清晰、亲切"),
    "w_notes": ("Reference notes (at most 20000 characters)", "参考资料（最多 20000 字）"),
    "w_outline_btn": ("Generate outline", "生成大纲"),
    "w_outline": ("Outline: one heading per line (edit it freely)", "大纲：每行一个小标题（可随意修改）"),
    "w_outline_save": ("Save outline", "保存大纲"),
    "w_write": ("Write article", "撰写文章"),
    "w_stop": ("Stop", "停止"),
    "w_continue": ("Continue", "继续"),
    "w_regen_n": ("Section", "小节"),
    "w_regen_instruction": ("What to do differently (optional)", "修改要求（可选）"),
    "w_regen": ("Regenerate section", "重写该节"),
    "w_editor": ("Article (Markdown)", "文章（Markdown）"),
    "w_save": ("Save version", "保存版本"),
    "w_versions": ("Versions", "版本"),
    "w_open": ("Open", "打开"),
    "w_compare": ("Compare with the editor", "与编辑器中的文本比较"),
    "w_diff": ("Differences (version → editor)", "差异（所选版本 → 编辑器）"),
    "w_format": ("Format", "格式"),
    "w_export": ("Export", "导出"),
    "w_file": ("File", "文件"),
    "w_docs": ("Documents", "文档"),
    "w_docs_open": ("Open document", "打开文档"),
    "w_new": ("+ New article", "+ 新文章"),
    "w_progress_outline": ("Writing the outline…", "正在生成大纲…"),
    "w_progress_section": ("Section {k}/{n}: {heading}", "第 {k}/{n} 节：{heading}"),
    "w_progress_finish": ("Abstract and tags…", "正在生成摘要和标签…"),
    "w_nothing": ("Nothing left to write: every section is done.", "没有要写的内容了：所有小节都已写完。"),
    "w_done": ("Done: saved as version {version} of {doc}.", "完成：已保存为 {doc} 的第 {version} 版。"),
    "w_outline_done": (
        "Outline saved ({doc}). Edit it, then Write article.",
        "大纲已保存（{doc}）。可以先修改，再点“撰写文章”。",
    ),
    "w_stopped": (
        "Stopped: {done} of {total} sections written and kept (version {version}). Continue writes the rest.",
        "已停止：{total} 节中已写完 {done} 节，均已保存（第 {version} 版）。点“继续”可写完其余部分。",
    ),
    "w_failed": ("Failed: {message}. What was written is kept.", "失败：{message}。已写的内容均已保存。"),
    "w_trimmed": ("Left out to fit the context: {message}", "为适应上下文长度而省略：{message}"),
    "w_fit": (
        "Model '{model}' writes {known} only, not {language}: expect poor text. "
        "Pull one that writes it: aigc models pull {suggestion} (or on the Models tab).",
        "模型“{model}”只会写{known}，不会写{language}，生成效果会很差。"
        "请下载一个支持该语言的模型：aigc models pull {suggestion}（或在“模型”页下载）。",
    ),
    "w_lang_en": ("English", "英文"),
    "w_lang_zh": ("Chinese", "中文"),
    "w_saved": ("Saved as version {version}.", "已保存为第 {version} 版。"),
    "w_outline_saved": ("Outline saved as version {version}.", "大纲已保存为第 {version} 版。"),
    "w_exported": ("Exported {name}.", "已导出 {name}。"),
    "w_no_doc": ("Write an article or open a document first.", "请先撰写文章或打开一篇文档。"),
    "w_no_version": ("Pick a version first.", "请先选择一个版本。"),
    "w_busy": ("A run is going on; stop it first.", "正在写作中，请先停止。"),
    "w_same": ("No differences.", "没有差异。"),
    # chat
    "chat_new": ("+ New chat", "+ 新对话"),
    "chat_conversations": ("Conversations", "对话记录"),
    "chat_manage": ("Rename / delete", "重命名 / 删除"),
    "chat_title": ("Title", "标题"),
    "chat_rename": ("Rename", "重命名"),
    "chat_delete": ("Delete", "删除"),
    "chat_model": ("Model", "模型"),
    "chat_system": ("System prompt", "系统提示词"),
    "chat_system_ph": ("You are a helpful assistant.", "你是一个乐于助人的助手。"),
    "chat_empty": ("Ask anything. Answers stream in as they are written.", "随便问点什么，回答会逐字显示。"),
    "chat_input_ph": (
        "Type a message; Enter sends, Shift+Enter starts a new line",
        "输入消息：回车发送，Shift+回车换行",
    ),
    "chat_send": ("Send", "发送"),
    "chat_stop": ("Stop", "停止"),
    "chat_regenerate": ("Regenerate", "重新生成"),
    "chat_sampling": ("Sampling settings", "采样设置"),
    "chat_stats": (
        "{tokens} tokens (prompt {prompt}) · seed {seed} · {reason}",
        "{tokens} 个词元（提示 {prompt}）· 种子 {seed} · {reason}",
    ),
    "reason_stop": ("finished", "已完成"),
    "reason_length": ("hit the token limit", "达到词元上限"),
    "reason_cancelled": ("cancelled", "已停止"),
    "reason_error": ("failed", "出错"),
    "prompt_reading": (
        "Reading the prompt: {done} of {total} tokens …",
        "正在读取提示：{total} 个词元已读 {done} 个……",
    ),
    "chat_trimmed": ("left out the {n} oldest messages to fit the context", "为适应上下文长度省略了最早的 {n} 条消息"),
    "chat_pick_first": (
        "Open a conversation first (and give a title to rename it).",
        "请先打开一个对话（重命名需填写标题）。",
    ),
    "chat_renamed": ("Renamed.", "已重命名。"),
    "chat_nothing_to_regenerate": (
        "Nothing to regenerate yet: ask something, or open a conversation.",
        "还没有可以重新生成的回答：请先提问，或打开一个对话。",
    ),
    "chat_deleted": ("Deleted “{title}”.", "已删除“{title}”。"),
    # images
    "img_prompt_ph": ("a lighthouse at dusk, (oil painting:1.2)", "黄昏的灯塔，(油画:1.2)"),
    "img_generate": ("Generate", "生成"),
    "img_interrupt": ("Interrupt", "中断"),
    "img_skip": ("Skip", "跳过"),
    "mode_txt2img": ("txt2img", "文生图"),
    "mode_img2img": ("img2img", "图生图"),
    "mode_inpaint": ("Inpaint", "局部重绘"),
    "mode_edit": ("Instruction edit", "指令编辑"),
    "mode_pnginfo": ("PNG info", "PNG 信息"),
    "mode_txt2img_help": (
        "Draws from the prompt alone. The other tabs start from an image.",
        "仅根据提示词作画。其他标签页从一张图片开始。",
    ),
    "fill_0": ("fill", "填充"),
    "fill_1": ("original", "原图"),
    "fill_2": ("latent noise", "潜空间噪声"),
    "fill_3": ("latent nothing", "潜空间置零"),
    "img_init": ("Input image", "输入图像"),
    "img_mask": ("Paint the area to change", "涂抹需要重绘的区域"),
    "img_edit_input": ("Image to edit (the prompt is the instruction)", "待编辑图像（提示词即指令）"),
    "img_variation": ("Variation seed", "差异种子"),
    "img_advanced": ("Advanced", "高级"),
    "img_ngms": ("Skip the negative prompt late (faster)", "后期跳过反向提示词（加速）"),
    "img_preview": ("Preview", "预览"),
    "img_results": ("Results", "结果"),
    "img_to_img2img": ("Send to img2img", "发送到图生图"),
    "img_to_inpaint": ("Send to inpaint", "发送到局部重绘"),
    "img_to_edit": ("Send to edit", "发送到指令编辑"),
    "img_infotext": ("Parameters", "生成参数"),
    "img_queued": ("Queued…", "排队中…"),
    "img_loading": ("Loading model {model}…", "正在加载模型 {model}…"),
    "img_compiling": ("Compiling the UNet (once per model)…", "正在编译 UNet（每个模型一次）…"),
    "img_openvino": (
        "Preparing the UNet and VAE for OpenVINO (once per model)…",
        "正在为 OpenVINO 准备 UNet 和 VAE（每个模型一次）…",
    ),
    "img_starting": ("Starting…", "准备开始…"),
    "img_shortcut": (
        "Ctrl+Enter generates, Alt+Enter skips (as in A1111).",
        "Ctrl+回车 生成，Alt+回车 跳过（与 A1111 相同）。",
    ),
    "img_hires": ("Hires. fix", "高分辨率修复 (Hires. fix)"),
    "resize_0": ("Just resize", "仅调整大小"),
    "resize_1": ("Crop and resize", "裁剪后缩放"),
    "resize_2": ("Resize and fill", "缩放后填充空白"),
    "resize_3": ("Just resize (latent upscale)", "调整大小（潜空间放大）"),
    "maskmode_0": ("Inpaint masked", "重绘蒙版内容"),
    "maskmode_1": ("Inpaint not masked", "重绘非蒙版内容"),
    "area_0": ("Whole picture", "整张图片"),
    "area_1": ("Only masked", "仅蒙版区域"),
    "img_progress": (
        "Step {step}/{steps} · batch {batch}/{batches} · ETA {eta} s",
        "第 {step}/{steps} 步 · 批次 {batch}/{batches} · 预计剩余 {eta} 秒",
    ),
    "img_done": ("Done: {n} image(s) in {seconds} s", "完成：{n} 张图像，用时 {seconds} 秒"),
    "img_interrupted": ("Interrupted: {n} image(s) kept, {seconds} s", "已中断：保留 {n} 张图像，用时 {seconds} 秒"),
    "img_nothing_selected": ("Generate an image first.", "请先生成一张图像。"),
    # prompt tools on the Images tab
    "pc_expand": ("✨ Expand", "✨ 扩写"),
    "pc_expand_empty": (
        "Type a short idea in the prompt box first, e.g. “a lighthouse in a storm”.",
        "请先在提示词框中写一个简短的想法，例如“暴风雨中的灯塔”。",
    ),
    "pc_expanded": (
        "Expanded by {model} (seed {seed}, template {template}).",
        "由 {model} 扩写（种子 {seed}，模板 {template}）。",
    ),
    "pc_styles": ("Styles", "风格"),
    "pc_styles_help": (
        "Saved styles (styles.csv), applied at generation in this order.",
        "已保存的风格（styles.csv），生成时按此顺序应用。",
    ),
    "pc_apply_styles": ("Apply to prompt", "应用到提示词"),
    "pc_styles_none": ("Choose one or more styles first.", "请先选择一个或多个风格。"),
    "pc_dynamic": ("Dynamic prompts / wildcards", "动态提示词 / 通配符"),
    "pc_dynamic_mode": ("Dynamic prompts", "动态提示词"),
    "pc_dynamic_help": (
        "{a|b} picks one, {2$$a|b|c} two, __name__ a line of wildcards/name.txt. Off: braces stay as typed.",
        "{a|b} 任选其一，{2$$a|b|c} 选两个，__name__ 取 wildcards/name.txt 中的一行。关闭时花括号按原样保留。",
    ),
    "pc_dynamic_off": ("Off", "关闭"),
    "pc_dynamic_random": ("Random (from the seed)", "随机（由种子决定）"),
    "pc_dynamic_all": ("Every combination", "全部组合"),
    "pc_preview": ("Preview", "预览"),
    "pc_preview_out": ("Prompts it gives", "生成的提示词"),
    "pc_no_wildcards": (
        "No wildcard files yet: put NAME.txt (one value a line) in {folder}.",
        "还没有通配符文件：请在 {folder} 中放入 NAME.txt（每行一个取值）。",
    ),
    "png_drop": ("Drop a PNG here", "把 PNG 拖到这里"),
    "png_text": ("Parameters in the image", "图像中的参数"),
    "png_none": ("This image carries no generation parameters.", "这张图像不含生成参数。"),
    "png_unreadable": ("The parameters in this image cannot be read: {why}", "无法读取这张图像中的参数：{why}"),
    "png_to_txt2img": ("Send to txt2img", "发送到文生图"),
    "png_to_img2img": ("Send to img2img", "发送到图生图"),
    "png_drop_first": ("Drop a PNG with parameters first.", "请先放入一张带生成参数的 PNG。"),
    # gallery
    "gal_search": ("Search prompts", "搜索提示词"),
    "gal_search_ph": ("lighthouse, 人工智能 …", "灯塔、lighthouse …"),
    "gal_kind": ("Kind", "类型"),
    "gal_kind_all": ("All", "全部"),
    "gal_kind_image": ("Image", "图像"),
    "gal_kind_text": ("Text", "文本"),
    "gal_kind_document": ("Article", "文章"),
    "gal_doc_reuse": (
        "An article is opened, continued and edited in the Write tab (its documents list).",
        "文章请在“写作”标签页的文档列表中打开、续写和修改。",
    ),
    "gal_model": ("Model", "模型"),
    "gal_images": ("Images", "图像"),
    "gal_image": ("Image", "图像"),
    "gal_params": ("All parameters", "全部参数"),
    "gal_pick": ("Pick a generation in the list to see its parameters.", "在列表中选择一项以查看其参数。"),
    "gal_reuse": ("Reuse parameters", "复用参数"),
    "gal_delete": ("Delete", "删除"),
    "gal_deleted": ("Deleted.", "已删除。"),
    "gal_col_time": ("Time", "时间"),
    "gal_col_kind": ("Kind", "类型"),
    "gal_col_model": ("Model", "模型"),
    "gal_col_prompt": ("Prompt / title", "提示词 / 标题"),
    # models
    "mod_col_id": ("Model", "模型"),
    "mod_col_kind": ("Kind", "类型"),
    "mod_col_engine": ("Engine", "引擎"),
    "mod_col_size": ("Size", "大小"),
    "mod_col_hash": ("Hash", "哈希"),
    "mod_col_license": ("License", "许可证"),
    "mod_col_source": ("Source", "来源"),
    "mod_col_default": ("Default", "默认"),
    "mod_col_loaded": ("Loaded", "已加载"),
    "mod_add_title": ("#### Add a local model", "#### 添加本地模型"),
    "mod_path": ("Path on this machine", "本机路径"),
    "mod_path_ph": (
        "~/models/qwen2.5-0.5b-instruct-q4_k_m.gguf, a transformers folder, or a .safetensors / diffusers folder",
        "~/models/qwen2.5-0.5b-instruct-q4_k_m.gguf、transformers 文件夹，或 .safetensors / diffusers 文件夹",
    ),
    "mod_name": ("Name (optional)", "名称（可选）"),
    "mod_name_ph": ("from the file name", "默认取文件名"),
    "mod_add": ("Add", "添加"),
    "mod_path_missing": ("Give the path of a model file or folder.", "请填写模型文件或文件夹的路径。"),
    "mod_added": ("Added {id} ({kind}).", "已添加 {id}（{kind}）。"),
    "mod_defaults_title": ("#### Defaults", "#### 默认模型"),
    "mod_default_text": ("Default text model", "默认文本模型"),
    "mod_default_image": ("Default image model", "默认图像模型"),
    "mod_set_default": ("Set as default", "设为默认"),
    "mod_default_set": ("{id} is now the default (saved to config.toml).", "{id} 已设为默认（已写入 config.toml）。"),
    "mod_pick_model": ("Pick a model first.", "请先选择一个模型。"),
    "mod_import_title": ("Import an AUTOMATIC1111 install", "导入 AUTOMATIC1111 安装目录"),
    "mod_import_path": (
        "A1111 folder (or its models/Stable-diffusion)",
        "A1111 文件夹（或其 models/Stable-diffusion）",
    ),
    "mod_import_ph": ("~/stable-diffusion-webui", "~/stable-diffusion-webui"),
    "mod_import": ("Import", "导入"),
    "mod_import_note": (
        "Adds its checkpoints; the files stay where they are.",
        "添加其中的模型文件；文件保留在原处。",
    ),
    "mod_imported": (
        "Added {added}; already here: {already}; skipped: {skipped}.",
        "已添加 {added} 个；已存在 {already} 个；跳过 {skipped} 个。",
    ),
    "mod_import_skipped": ("{name}: {why}", "{name}：{why}"),
    "mod_remote_title": ("Add a remote model (OpenAI-compatible server)", "添加远程模型（兼容 OpenAI 的服务）"),
    "mod_remote_note": (
        "llama.cpp's server, vLLM, Ollama (http://127.0.0.1:11434/v1) or a hosted service. The key is sent"
        " only to that server; give the name of an environment variable that holds it, or the key itself"
        " (kept in AIGC_HOME/keys.json, readable by you alone).",
        "llama.cpp 服务、vLLM、Ollama（http://127.0.0.1:11434/v1）或在线服务。密钥只发给该服务；"
        "请填写保存密钥的环境变量名，或直接填写密钥（保存在 AIGC_HOME/keys.json，仅本人可读）。",
    ),
    "mod_remote_name": ("Name in the studio", "在工作室中的名称"),
    "mod_remote_url": ("Base URL", "基础 URL"),
    "mod_remote_model": ("Model name on the server", "服务上的模型名"),
    "mod_remote_env": ("API key variable (optional)", "API 密钥环境变量（可选）"),
    "mod_remote_key": ("or the API key (optional)", "或 API 密钥（可选）"),
    "mod_remote_add": ("Add remote model", "添加远程模型"),
    "mod_remote_missing": (
        "Give a name, the server's base URL and the model's name on it.",
        "请填写名称、服务的基础 URL 和服务上的模型名。",
    ),
    "mod_remote_added": ("Added {id}: {url} ({model}).", "已添加 {id}：{url}（{model}）。"),
    "mod_pull_title": ("Pull a model from the catalog", "从模型目录下载"),
    "mod_pull_pick": ("Catalog model", "目录中的模型"),
    "mod_pull": ("Pull", "下载"),
    "mod_pulling": ("{file} — {done:.0f} of {total:.0f} MB", "{file} — 已下载 {done:.0f} / {total:.0f} MB"),
    "mod_pulled": ("{id} is ready.", "{id} 已就绪。"),
    "mod_pull_note": (
        "Downloads from the Hugging Face hub (or HF_ENDPOINT) into AIGC_HOME/models; an interrupted "
        "pull continues where it stopped.",
        "从 Hugging Face（或 HF_ENDPOINT）下载到 AIGC_HOME/models；中断后再次下载会从断点继续。",
    ),
    # settings
    "set_storage_title": ("#### Storage", "#### 存储"),
    "set_home": ("State folder (AIGC_HOME)", "数据文件夹（AIGC_HOME）"),
    "set_outputs": ("Output folder", "输出文件夹"),
    "set_outputs_help": (
        "Images are written under images/DATE/ here, each PNG with its parameters.",
        "图像保存在其中的 images/日期/ 下，每个 PNG 都带有生成参数。",
    ),
    "set_defaults_title": (
        "#### Defaults (config.toml; the server reads them at start)",
        "#### 默认值（config.toml，服务启动时读取）",
    ),
    "set_save": ("Save", "保存"),
    "set_saved": (
        "Saved {keys} to config.toml; they apply from the next start.",
        "已将 {keys} 写入 config.toml，下次启动时生效。",
    ),
    "set_nothing": ("Nothing changed.", "没有改动。"),
    "set_env_wins": ("An environment variable overrides: {envs}.", "以下环境变量优先：{envs}。"),
    "set_running": (
        "This server runs with {values} (a command-line flag or an environment variable); config.toml is shown here.",
        "当前服务使用 {values}（来自命令行参数或环境变量）；这里显示的是 config.toml 中的值。",
    ),
    "set_host": ("Host", "监听地址"),
    "set_port": ("Port", "端口"),
    "set_auth": ("Sign-in", "登录验证"),
    "set_database_url": ("Database (PostgreSQL URL)", "数据库（PostgreSQL 地址）"),
    "set_model": ("Default text model", "默认文本模型"),
    "set_image_model": ("Default image model", "默认图像模型"),
    "set_threads": ("CPU threads", "CPU 线程数"),
    "set_context": ("Context length", "上下文长度"),
    "set_parallel": ("Parallel requests per model", "每个模型并行请求数"),
    "set_prompt_batch": ("Prompt tokens read per step", "每步读取的提示词元数"),
    "set_device": ("Device for transformers models", "transformers 模型的运行设备"),
    "set_max_loaded": ("Text models kept loaded", "同时加载的文本模型数"),
    "set_model_memory": ("Models in memory", "内存中保留的模型"),
    "set_clip_skip": ("Default clip skip", "默认 Clip skip"),
    "set_token_merging_ratio": ("Default token merging ratio", "默认 Token merging 比例"),
    "set_image_compile": ("Compile image models (torch.compile)", "编译图像模型（torch.compile）"),
    "set_image_openvino": ("Run image models on OpenVINO (CPU)", "用 OpenVINO 运行图像模型（CPU）"),
    "set_test_models": ("Show test models", "显示测试模型"),
    "set_ray_address": ("Ray cluster address (serve --ray)", "Ray 集群地址（serve --ray）"),
    "set_ray_min_replicas": ("Ray Serve: fewest replicas", "Ray Serve：最少副本数"),
    "set_ray_max_replicas": ("Ray Serve: most replicas", "Ray Serve：最多副本数"),
    "set_ray_cpus_per_replica": ("Ray Serve: CPUs per replica", "Ray Serve：每个副本的 CPU 数"),
    "set_max_body_mb": ("Largest request (MiB)", "最大请求体（MiB）"),
    "set_shutdown_grace": ("Shutdown grace (s)", "停止宽限（秒）"),
    "set_rate_limit_per_minute": ("Requests per minute per user (0: no limit)", "每位用户每分钟请求数（0：不限）"),
    "set_max_concurrent_jobs": ("Generations at once per user (0: no limit)", "每位用户同时进行的生成数（0：不限）"),
    "set_max_upload_mb": ("Largest uploaded file (MiB)", "最大上传文件（MiB）"),
    "set_max_tokens_per_request": ("Most tokens per request (0: no limit)", "每次请求最多生成的 token 数（0：不限）"),
    "set_max_request_megapixels": (
        "Most pixels per image request (megapixels, 0: no limit)",
        "每次图像请求的最多像素（百万像素，0：不限）",
    ),
    "set_max_image_megapixels": ("Largest image (megapixels)", "最大图像（百万像素）"),
    "set_run_max_wall_seconds": ("Code runs: most wall time (s)", "代码运行：最长墙钟时间（秒）"),
    "set_run_max_cpu_seconds": ("Code runs: most CPU time (s)", "代码运行：最长 CPU 时间（秒）"),
    "set_run_max_memory_mb": ("Code runs: most memory (MiB)", "代码运行：最大内存（MiB）"),
    "set_run_max_processes": ("Code runs: most processes", "代码运行：最多进程数"),
    "set_run_max_output_kb": ("Code runs: most output (KiB)", "代码运行：最大输出（KiB）"),
    "set_run_max_files_mb": ("Code runs: most temp space (MiB)", "代码运行：最大临时空间（MiB）"),
    "set_label_visible": ("Visible mark on images", "图像显式标识"),
    "set_label_language": ("Label language", "标识语言"),
    "set_label_position": ("Image mark position", "图像标识位置"),
    "set_label_opacity": ("Image mark opacity (%)", "图像标识不透明度（%）"),
    "set_label_text": ("Label line on exported text", "导出文本的标识行"),
    "set_label_text_position": ("Text label position", "文本标识位置"),
    "set_label_metadata": ("Implicit labels (metadata)", "隐式标识（元数据）"),
    "set_aigc_producer": ("Content producer code", "内容生成者编码"),
    "set_c2pa": ("C2PA content credentials", "C2PA 内容凭证"),
    "set_c2pa_cert": ("C2PA certificate (PEM)", "C2PA 证书（PEM）"),
    "set_c2pa_key": ("C2PA private key (PEM)", "C2PA 私钥（PEM）"),
    "set_watermark": ("Invisible watermark", "隐形水印"),
    "set_nsfw_action": ("NSFW action", "不适宜内容处理"),
    "set_nsfw_threshold": ("NSFW threshold (%)", "不适宜内容阈值（%）"),
    "set_prompt_blocklist": ("Prompt block-list", "提示词屏蔽列表"),
    # The badge beside generated text (ui/text_labels.py), in the page's language.
    "text_badge": ("AI-generated", "AI生成"),
}

# Labels of declared parameters (A1111's for images, OpenAI's for text) and the Chinese of their help.
FIELDS: dict[str, tuple[str, str, str]] = {
    # name: (English label, Chinese label, Chinese help)
    "prompt": ("Prompt", "提示词", "要画什么。(词:1.2) 提高某个词的权重。"),
    "negative_prompt": ("Negative prompt", "反向提示词", "不希望出现在图像中的内容。"),
    "steps": ("Sampling steps", "迭代步数", "去噪步数。"),
    "sampler_name": ("Sampling method", "采样方法", "采样器（A1111 名称）。"),
    "scheduler": ("Schedule type", "调度类型", "噪声调度类型。"),
    "cfg_scale": ("CFG Scale", "提示词引导系数 (CFG)", "提示词对图像的约束强度。"),
    "seed": ("Seed", "随机种子", "种子；-1 表示随机（并记录实际使用的种子）。"),
    "subseed": ("Variation seed", "差异种子", "差异种子；-1 表示随机。"),
    "subseed_strength": ("Variation strength", "差异强度", "向差异种子靠拢的程度（0：不变）。"),
    "width": ("Width", "宽度", "宽度（像素），8 的倍数。"),
    "height": ("Height", "高度", "高度（像素），8 的倍数。"),
    "batch_size": ("Batch size", "单批数量", "每批同时生成的图像数。"),
    "n_iter": ("Batch count", "批次数", "依次生成的批次数。"),
    "denoising_strength": ("Denoising strength", "重绘幅度", "图生图：改变的程度（0：不改变）。"),
    "mask_blur": ("Mask blur", "蒙版模糊", "局部重绘：蒙版边缘的模糊像素数。"),
    "inpainting_fill": ("Masked content", "蒙版区域内容", "局部重绘：蒙版区域的初始内容。"),
    "image_cfg_scale": ("Image CFG Scale", "图像引导系数", "指令编辑：保持原图的程度。"),
    "clip_skip": ("Clip skip", "跳过 CLIP 层数", "文本编码器提前停止的层数（1：关闭）。"),
    "eta": ("Eta (noise multiplier)", "噪声倍率 (eta)", "祖先采样器的噪声倍率（留空：1）与 DDIM 的 eta（留空：0）。"),
    "tiling": ("Tiling", "平铺图 (Tiling)", "无缝平铺：图像可以无接缝地重复拼接。"),
    "s_min_uncond": (
        "Negative Guidance minimum sigma",
        "负向引导最小 sigma (NGMS)",
        "A1111 的 NGMS：噪声低于此值时，每隔一步只用正向提示词、不用反向提示词；更快，但会改变画面（0：关闭）。",
    ),
    "s_min_uncond_all": (
        "NGMS all steps",
        "NGMS 应用于所有步",
        "配合负向引导最小 sigma：低于它的每一步都跳过反向提示词，而不是每隔一步（A1111 的 NGMS all steps）。",
    ),
    "token_merging_ratio": (
        "Token merging ratio",
        "Token merging 比例",
        "Token merging（tomesd，同 A1111）：自注意力前合并相似 token 的比例；更快，但会改变画面（0：关闭）。",
    ),
    "enable_hr": (
        "Enable hires. fix",
        "启用高分辨率修复",
        "高分辨率修复（文生图）：先生成，再放大，然后在更大的尺寸上再次去噪。",
    ),
    "hr_upscaler": ("Upscaler", "放大算法", "高分辨率修复使用的放大算法。"),
    "hr_second_pass_steps": ("Hires steps", "高分迭代步数", "高分辨率修复第二遍的步数（0：与迭代步数相同）。"),
    "hr_scale": ("Upscale by", "放大倍数", "高分辨率修复：按此倍数放大。"),
    "hr_resize_x": ("Resize width to", "将宽度调整为", "高分辨率修复：放大到此宽度，而不按倍数（0：按倍数）。"),
    "hr_resize_y": ("Resize height to", "将高度调整为", "高分辨率修复：放大到此高度，而不按倍数（0：按倍数）。"),
    "resize_mode": (
        "Resize mode",
        "缩放模式",
        "图生图：输入图像如何适配目标尺寸。",
    ),
    "inpainting_mask_invert": ("Mask mode", "蒙版模式", "局部重绘：重绘蒙版（白色）区域，或重绘蒙版以外的区域。"),
    "inpaint_full_res": (
        "Inpaint area",
        "重绘区域",
        "局部重绘：整张图片，或仅以全分辨率重绘蒙版区域再贴回原图。",
    ),
    "inpaint_full_res_padding": (
        "Only masked padding, pixels",
        "仅蒙版区域下边缘预留像素",
        "局部重绘（仅蒙版区域）：蒙版区域周围保留的上下文像素。",
    ),
    "model": ("Stable Diffusion checkpoint", "Stable Diffusion 模型", "图像模型；留空使用默认图像模型。"),
    "temperature": ("Temperature", "温度", "采样温度；0 为贪心解码。"),
    "top_p": ("Top P", "Top P", "核采样：保留累计概率达到该值的词元。"),
    "top_k": ("Top K", "Top K", "只保留概率最高的 k 个词元（0：全部）。"),
    "min_p": ("Min P", "Min P", "丢弃概率低于 min_p × 最高概率的词元。"),
    "repeat_penalty": ("Repeat penalty", "重复惩罚", "对重复词元的惩罚（1：关闭）。"),
    "presence_penalty": ("Presence penalty", "存在惩罚", "对已出现词元的惩罚。"),
    "frequency_penalty": ("Frequency penalty", "频率惩罚", "按出现次数对词元施加惩罚。"),
    "max_tokens": ("Max tokens", "最大词元数", "最多生成的词元数（留空：直到上下文用尽）。"),
    "stop": ("Stop sequences", "停止序列", f"遇到其中任一字符串即停止，每行一个（最多 {MAX_STOP} 个）。"),
}
SETTINGS_HELP_ZH = {
    "host": "服务监听的地址；默认仅本机。",
    "port": "网页界面与 API 的端口。",
    "database_url": "记录保存的位置：留空为 SQLite 文件 AIGC_HOME/studio.db；或 PostgreSQL 数据库，"
    "postgresql://用户@主机:端口/库名（团队服务器用）。密码请放在 PGPASSWORD 或 ~/.pgpass，不要写进地址（"
    "设置页会显示地址）。文件仍在 AIGC_HOME 下。更改后重启生效。",
    "auth": "服务器的登录验证：auto（监听非本机地址时必须登录，127.0.0.1 上关闭）或 on（始终必须登录）。"
    "开启后，除 /health 与 /docs 外的每个路径都需要用户的 API 密钥、密码或网页登录会话。",
    "model": "默认文本模型的 id 或别名。",
    "image_model": "默认图像模型的 id 或别名（留空：最后添加的图像模型）。",
    "threads": "llama.cpp 使用的 CPU 线程数（0：全部核心）。",
    "context": "本地文本模型每个请求的上下文长度（0：模型训练时的长度，llama.cpp 模型每个槽位最多 4096；"
    "transformers 模型不会超过训练长度）。",
    "parallel": "llama.cpp 模型同时解码的请求数（槽位）；每个槽位有自己的上下文，内存随 并行数 × 上下文 增长。",
    "prompt_batch": "llama.cpp 模型每步读取的提示词元数。更长的提示分步读取，每步之后报告进度，"
    "模型的其他回答在步与步之间继续；在 GPU 上，步子越大，长提示读得越快。",
    "device": "transformers 模型的运行设备：auto（torch 检测到 GPU 时用 CUDA，否则用 CPU）、cpu、cuda 或 cuda:N。",
    "max_loaded": "同时保持加载的文本模型数；默认模型始终保留。",
    "model_memory": "内存中保留哪些模型：both（默认文本模型与当前图像模型都保留）或 one（加载一类模型时，"
    "在另一类模型空闲后将其释放；适合内存不足的机器）。",
    "clip_skip": "未指定 Clip skip 的图像生成所用的值（即 A1111 的 CLIP_stop_at_last_layers 选项）。",
    "token_merging_ratio": "未指定比例的图像生成所用的 Token merging（tomesd）比例，0 到 0.9"
    "（同 A1111 的同名选项）：更快，但会改变画面；0：关闭。",
    "image_compile": "用 torch.compile 编译每个图像模型的 UNet（需要 C 编译器）："
    "加载模型后的第一张图要等几分钟；编译失败时不编译运行。",
    "image_openvino": "用 OpenVINO（CPU）运行每个图像模型的 UNet 和 VAE 解码器：更快（SD 1.5、2 核：1.15–1.19 倍），"
    "画面不变，占用更多内存；模型的第一张图要等几分钟转换（只一次，保存在缓存中）。",
    "ray_address": "`aigc serve --ray` 所用的 Ray 集群：留空则在服务器进程中启动本地集群，auto 连接本机 `ray start`"
    " 启动的集群，ray://主机:端口 连接远程集群。",
    "ray_min_replicas": "每个引擎部署的最少 Ray Serve 副本数（0：空闲时不保留副本；首个请求需等待副本启动）。",
    "ray_max_replicas": "每个引擎部署的最多 Ray Serve 副本数；集群有 GPU 时每个副本占用一块 GPU。",
    "ray_cpus_per_replica": "每个 Ray Serve 副本占用的 CPU 数；未设置 threads 时，其引擎使用同样多的线程。",
    "test_models": "1：在模型列表中显示内置测试模型（plain 图像引擎与 echo 文本引擎）并接受其名称；测试套件会开启。",
    "max_body_mb": "服务器接受的最大请求体，单位 MiB（含上传的图像）。",
    "shutdown_grace": "停止服务器（SIGTERM、Ctrl-C）时给运行中的工作几秒来停下并记录已完成部分；排队任务留待下次启动。",
    "rate_limit_per_minute": "每位用户每分钟可向 API 发送的请求数（安静一分钟后可一次发送这么多）；0：不限。",
    "max_concurrent_jobs": "每位用户同时运行或排队的生成数（正在流式输出的文本回答、图像任务）；0：不限。",
    "max_upload_mb": "上传文件的最大大小（图生图、局部重绘或 PNG 信息的图像、要检测的文件），单位 MiB。",
    "max_tokens_per_request": (
        "一次文本请求最多可申请的新 token 数（max_tokens）；未设置的请求最多生成这么多；0：不限。"
    ),
    "max_request_megapixels": (
        "一次图像请求最多生成的像素，单位百万像素：宽 × 高（高清修复后）× batch_size × n_iter；0：不限。"
    ),
    "max_image_megapixels": "可解码的最大图像，单位百万像素（宽 × 高 ÷ 1,000,000）。",
    "run_max_wall_seconds": "一次代码运行最多可申请的墙钟时间（秒）。",
    "run_max_cpu_seconds": "一次代码运行中每个进程最多可申请的 CPU 时间（秒）。",
    "run_max_memory_mb": "一次代码运行中每个进程最多可申请的内存（MiB）。",
    "run_max_processes": "一次代码运行最多可申请的进程数。",
    "run_max_output_kb": "一次代码运行最多可申请的输出量（KiB）。",
    "run_max_files_mb": "一次代码运行最多可申请的临时目录空间（MiB）。",
    "label_visible": "在每张生成图像的角落绘制可见的“AI生成”标识。",
    "label_language": "显式标识的语言：zh（AI生成）、en（AI-generated）。",
    "label_position": "图像显式标识所在的角。",
    "label_opacity": "图像显式标识的不透明度（百分比）。",
    "label_text": "导出或复制生成的文本时加上标识行（本文由人工智能生成 / Generated by AI）。",
    "label_text_position": "文本标识行的位置：start（开头）或 end（结尾）。",
    "label_metadata": "在每个文件中写入隐式标识（TC260 AIGC 字段、IPTC 数字来源类型）。",
    "aigc_producer": "隐式 AIGC 标识中的 ContentProducer（内容生成者）编码（如有，填写贵机构的编码）。",
    "c2pa": "为每张生成图像签署 C2PA 内容凭证。",
    "c2pa_cert": "您自己的 C2PA 证书链（PEM）；留空：首次使用时在 AIGC_HOME/c2pa 下自动创建。",
    "c2pa_key": "c2pa_cert 对应的私钥（PEM）；c2pa_cert 留空时也留空。",
    "watermark": "嵌入可识别每张生成图像的隐形水印。",
    "nsfw_action": "NSFW 分类器评分达到 nsfw_threshold 的图像如何处理：allow（放行）、blur（模糊）或 block（屏蔽）。",
    "nsfw_threshold": "触发 nsfw_action 的 NSFW 评分（百分比）。",
    "prompt_blocklist": "图像提示词中不得包含的词或短语（以逗号或换行分隔）。",
}


# Keys Gradio's own frontend looks up but its dictionaries lack (in 6.31: some in both languages, such as
# the screen-reader status "common.complete", more in zh-CN). Missing, the raw key would show.
GRADIO_KEYS: dict[str, tuple[str, str]] = {
    "common.complete": ("Complete", "完成"),
    "common.upload": ("Upload", "上传"),
    "common.video": ("Video", "视频"),
    "common.webcam": ("Webcam", "摄像头"),
    "common.download_all": ("Download All", "全部下载"),
    "common.progress": ("Progress", "进度"),
    "common.screen_studio": ("Screen Studio", "屏幕录制"),
    "image.no_webcam_support": ("This browser cannot use a webcam.", "此浏览器无法使用摄像头。"),
    "chatbot.copy_message": ("Copy message", "复制消息"),
    "chatbot.copied_message": ("Copied message", "已复制消息"),
    "dataframe.filter": ("Filter", "筛选"),
    "dataframe.clear_filter": ("Clear filters", "清除筛选"),
    "dataframe.import_empty_file": ("The dropped file is empty.", "拖入的文件是空的。"),
    "dataframe.import_no_column_names": ("The dropped file has no column names.", "拖入的文件没有列名。"),
    "dataframe.import_ragged_row": (
        "Line {line} of the file has {fields} fields, the header has {columns}.",
        "文件第 {line} 行有 {fields} 个字段，表头有 {columns} 个。",
    ),
    "dataframe.import_static_columns": (
        "Cannot import into a table with read-only columns.",
        "无法导入到列为只读的表格。",
    ),
    "dataframe.import_fixed_columns": (
        "This table takes exactly {expected} columns, the file has {actual}.",
        "此表格需要正好 {expected} 列，文件有 {actual} 列。",
    ),
    "dataframe.import_fixed_rows": (
        "This table takes exactly {expected} rows, the file has {actual}.",
        "此表格需要正好 {expected} 行，文件有 {actual} 行。",
    ),
    "image_editor.add_layer": ("Add Layer", "添加图层"),
    "image_editor.brush": ("Brush", "画笔"),
    "image_editor.brush_size": ("Brush Size", "画笔大小"),
    "image_editor.clear_canvas": ("Clear canvas", "清空画布"),
    "image_editor.color": ("Color", "颜色"),
    "image_editor.confirm_crop": ("Confirm crop", "确认裁剪"),
    "image_editor.crop": ("Crop", "裁剪"),
    "image_editor.erase": ("Erase", "橡皮擦"),
    "image_editor.eraser_size": ("Eraser Size", "橡皮擦大小"),
    "image_editor.fit_to_screen": ("Fit to screen", "适应屏幕"),
    "image_editor.layer": ("Layer", "图层"),
    "image_editor.layers": ("Layers", "图层"),
    "image_editor.pan": ("Pan", "平移"),
    "image_editor.paste": ("Paste", "粘贴"),
    "image_editor.redo": ("Redo", "重做"),
    "image_editor.resize": ("Resize", "调整大小"),
    "image_editor.save_changes": ("Save changes", "保存更改"),
    "image_editor.select_draw_tool": ("select the draw tool to start", "选择画笔工具开始绘制"),
    "image_editor.show_layers": ("Show Layers", "显示图层"),
    "image_editor.upload": ("Upload", "上传"),
    "image_editor.upload_image": ("Upload an image", "上传图像"),
    "image_editor.webcam": ("Webcam", "摄像头"),
    "image_editor.zoom_in": ("Zoom in", "放大"),
    "image_editor.zoom_out": ("Zoom out", "缩小"),
    "status.queue_position": ("In queue: {position} of {size}", "排队中：第 {position} 位，共 {size} 位"),
}


def _declared_help(name: str) -> str:
    for model in (ImageRequest, TextOptions):
        if name in model.model_fields:
            return model.model_fields[name].description or ""
    raise KeyError(f"no declared parameter named {name!r}")


def _tables() -> tuple[dict[str, str], dict[str, str]]:
    labels = {**GRADIO_KEYS, **TABLE, **EDITING_LABELS, **CODE_LABELS, **ARENA_LABELS, **IMAGE_LABEL_LABELS}
    en = {key: pair[0] for key, pair in labels.items()}
    zh = {key: pair[1] for key, pair in labels.items()}
    for name, (label_en, label_zh, help_zh) in FIELDS.items():
        en[f"f_{name}"], zh[f"f_{name}"] = label_en, label_zh
        en[f"h_{name}"], zh[f"h_{name}"] = _declared_help(name), help_zh
    # The text box takes one stop string per line; the declaration speaks of a list.
    en["h_stop"] = f"Stop at any of these strings, one per line (at most {MAX_STOP})."
    for key, setting in SETTINGS.items():
        if key not in SETTINGS_HELP_ZH or f"set_{key}" not in TABLE:
            raise KeyError(f"setting {key!r} needs its labels in ui/i18n.py (TABLE 'set_{key}', SETTINGS_HELP_ZH)")
        en[f"set_{key}_help"], zh[f"set_{key}_help"] = setting.help, SETTINGS_HELP_ZH[key]
    return en, zh


EN, ZH = _tables()
I18N = gr.I18n(en=EN, **{"zh-CN": ZH})


def t(key: str) -> gr.i18n.I18nData:
    """A label the browser translates; an unknown key fails when the UI is built, not on the page."""
    if key not in EN:
        raise KeyError(f"no UI text {key!r} in ui/i18n.py")
    return I18N(key)


def text(lang: str | None, key: str, **values: object) -> str:
    """A label in ``lang`` ("en" or "zh-CN"), formatted, for text that handlers write."""
    return (ZH if is_zh(lang) else EN)[key].format(**values)


def is_zh(lang: str | None) -> bool:
    return (lang or "").lower().startswith("zh")


def field_label(lang: str | None, name: str) -> str:
    """The label a user sees for a declared parameter, in ``lang``; else the name itself."""
    return (ZH if is_zh(lang) else EN).get(f"f_{name}", name)
