"""The Arena tab's labels in English and Simplified Chinese (merged into ui/i18n.py's table)."""

from __future__ import annotations

# key: (English, 简体中文)
LABELS: dict[str, tuple[str, str]] = {
    "tab_arena": ("Arena", "竞技场"),
    "ar_prompt": ("Prompt", "提示词"),
    "ar_prompt_ph": (
        "Ask anything; two anonymous models answer, you pick the better one",
        "随便问点什么；两个匿名模型作答，由你选出更好的一个",
    ),
    "ar_category": ("Category", "类别"),
    "ar_cat_chat": ("Chat", "对话"),
    "ar_cat_writing": ("Writing", "写作"),
    "ar_cat_code": ("Code", "代码"),
    "ar_cat_image": ("Image", "图像"),
    "ar_models": ("Models (optional)", "模型（可选）"),
    "ar_models_info": (
        "Pick 0-2; the others are drawn at random. Their names stay hidden until you vote.",
        "可选 0-2 个，其余随机抽取。投票之前不会显示模型名称。",
    ),
    "ar_battle": ("Battle", "开始对战"),
    "ar_model_a": ("Model A", "模型 A"),
    "ar_model_b": ("Model B", "模型 B"),
    "ar_vote_a": ("👈 A is better", "👈 A 更好"),
    "ar_vote_b": ("👉 B is better", "👉 B 更好"),
    "ar_vote_tie": ("🤝 Tie", "🤝 平局"),
    "ar_vote_bad": ("👎 Both are bad", "👎 都不好"),
    "ar_answering": ("Both models are answering…", "两个模型正在作答……"),
    "ar_failed": (
        "An answer failed, so this battle cannot be voted; start another.",
        "有一方作答失败，本场无法投票；请再开一场。",
    ),
    "ar_revealed": (
        "Model A was {a}, Model B was {b}. Your vote: {vote}.",
        "模型 A 是 {a}，模型 B 是 {b}。你的投票：{vote}。",
    ),
    "ar_prompt_missing": ("Write a prompt first.", "请先填写提示词。"),
    "ar_battle_first": ("Start a battle first.", "请先开始一场对战。"),
    "ar_board_title": ("### Leaderboard", "### 排行榜"),
    "ar_board_category": ("Leaderboard of", "排行榜类别"),
    "ar_all": ("All categories", "全部类别"),
    "ar_col_rank": ("Rank", "排名"),
    "ar_col_model": ("Model", "模型"),
    "ar_col_score": ("BT score (95% CI)", "BT 分数（95% 置信区间）"),
    "ar_col_elo": ("Elo", "Elo"),
    "ar_col_battles": ("Battles", "对战数"),
    "ar_col_winrate": ("Win rate", "胜率"),
    "ar_no_battles": ("no battles yet", "暂无对战"),
    "ar_board_note": (
        "{battles} voted battle(s). Bradley–Terry scores on Elo's scale (mean 1000), 95% intervals by bootstrap; "
        "a tie or “both bad” counts as half a win for each.",
        "已投票对战 {battles} 场。Bradley–Terry 分数按 Elo 刻度（平均 1000），95% 区间由自助法得出；"
        "平局或“都不好”各计半场胜。",
    ),
}
