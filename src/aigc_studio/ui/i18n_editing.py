"""The labels of the editing panel (``edit_tools.py``) and of the Templates section of Settings
(``templates.py``), in English and Simplified Chinese; ``i18n.py`` merges them into its table."""

from __future__ import annotations

# key: (English, 简体中文)
LABELS: dict[str, tuple[str, str]] = {
    # the operations panel under the Write tab's editor
    "edit_title": ("#### Edit with the model", "#### 用模型修改"),
    "edit_op": ("Operation", "操作"),
    "edit_op_continue": ("Continue", "续写"),
    "edit_op_polish": ("Polish", "润色"),
    "edit_op_expand": ("Expand", "扩写"),
    "edit_op_shorten": ("Shorten", "缩写"),
    "edit_op_summarize": ("Summarize", "摘要"),
    "edit_op_translate": ("Translate", "翻译"),
    "edit_op_tone": ("Change tone", "改变语气"),
    "edit_op_titles": ("Suggest titles", "推荐标题"),
    "edit_op_keywords": ("Extract keywords", "提取关键词"),
    "edit_tone": ("Tone", "语气"),
    "edit_tone_ph": ("formal, friendly, persuasive, ...", "正式、亲切、有说服力……"),
    "edit_target": ("Translate into", "译成"),
    "edit_target_auto": ("the other language", "另一种语言"),
    "edit_target_en": ("English", "英文"),
    "edit_target_zh": ("Chinese", "中文"),
    "edit_model": ("Model", "模型"),
    "edit_run": ("Run on selection", "处理选中内容"),
    "edit_stop": ("Stop", "停止"),
    "edit_accept": ("Accept", "采用"),
    "edit_reject": ("Reject", "放弃"),
    "edit_hint": (
        "Select text in the editor to edit only that part; with nothing selected, the whole text is used.",
        "在编辑器中选中文字则只处理选中部分；未选中时处理全文。",
    ),
    "edit_answer": ("The model's answer", "模型的回答"),
    "edit_diff": ("Changes", "改动"),
    "edit_empty": ("The editor is empty: write or paste some text first.", "编辑器是空的：请先输入或粘贴文字。"),
    "edit_running": ("Working on characters {start}–{end} …", "正在处理第 {start}–{end} 个字符……"),
    "edit_done": (
        "Done ({tokens} tokens): review the changes, then Accept or Reject.",
        "完成（{tokens} 个词元）：查看改动后选择“采用”或“放弃”。",
    ),
    "edit_done_list": ("Done ({tokens} tokens).", "完成（{tokens} 个词元）。"),
    "edit_stopped": ("Stopped: the text is unchanged.", "已停止：文字没有改动。"),
    "edit_unchanged": ("The answer changes nothing.", "回答没有带来任何改动。"),
    "edit_accepted": ("Accepted: the editor holds the new text.", "已采用：编辑器中已是新文字。"),
    "edit_rejected": ("Rejected: the text is as it was.", "已放弃：文字保持原样。"),
    "edit_nothing": ("There is no proposal to accept: run an operation first.", "没有可采用的结果：请先运行一个操作。"),
    "edit_changed_since": (
        "The editor's text changed while the edit ran; run it again on the current text.",
        "运行期间编辑器中的文字已改变；请对当前文字重新运行。",
    ),
    "edit_busy": ("An edit is already running on this page: stop it first.", "本页已有一个修改在运行：请先停止它。"),
    # the Templates section of the Settings tab
    "tpl_title": ("#### Prompt templates", "#### 提示词模板"),
    "tpl_note": (
        "Templates are TOML files; a prompt names its variables in braces. Shipped ones cannot be deleted: "
        "saving one of yours with the same name and language takes its place, and deleting yours brings the "
        "shipped one back.",
        "模板是 TOML 文件，提示词中用花括号标出变量名。内置模板不能删除：保存同名、同语言的模板会替换它，"
        "删除你的模板即恢复内置模板。",
    ),
    "tpl_col_key": ("Key", "键"),
    "tpl_col_kind": ("Kind", "类型"),
    "tpl_col_source": ("Source", "来源"),
    "tpl_col_title": ("Title", "标题"),
    "tpl_source_shipped": ("shipped", "内置"),
    "tpl_source_user": ("yours", "自定义"),
    "tpl_source_override": ("yours, replacing the shipped one", "自定义（替换内置）"),
    "tpl_pick": ("Template", "模板"),
    "tpl_file": ("Template file (TOML)", "模板文件（TOML）"),
    "tpl_new": ("New", "新建"),
    "tpl_save": ("Save", "保存"),
    "tpl_delete": ("Delete", "删除"),
    "tpl_export": ("Export", "导出"),
    "tpl_import": ("Import a file", "导入文件"),
    "tpl_replace": ("Replace my template of the same name", "替换同名的自定义模板"),
    "tpl_saved": ("Saved {template} ({source}).", "已保存 {template}（{source}）。"),
    "tpl_deleted": ("Deleted {template}.", "已删除 {template}。"),
    "tpl_restored": (
        "Deleted your {template}: the shipped template is back.",
        "已删除你的 {template}：内置模板已恢复。",
    ),
    "tpl_imported": ("Imported {template} ({source}).", "已导入 {template}（{source}）。"),
    "tpl_pick_first": ("Pick a template first.", "请先选择一个模板。"),
    "tpl_empty": ("The template file is empty.", "模板文件是空的。"),
    "tpl_problems": ("Skipped (cannot be read): {problems}", "已跳过（无法读取）：{problems}"),
    "tpl_source": ("Source: {source}", "来源：{source}"),
    # a new template's starting point (formatted: doubled braces are one)
    "tpl_skeleton_prompt": ("Write about {{topic}}.", "请写一写{{topic}}。"),
    "tpl_skeleton_topic": ("what to write about", "要写的主题"),
}
