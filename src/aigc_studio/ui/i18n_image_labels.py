"""The labels of generated images as the Images and Gallery tabs show them, in English and Simplified
Chinese (merged into ui/i18n.py's table)."""

from __future__ import annotations

# key: (English, 简体中文)
LABELS: dict[str, tuple[str, str]] = {
    "lab_badge": ("AI-generated", "AI生成"),
    "lab_not_labeled": ("not labeled", "未标识"),
    "lab_none": ("no labels (all were off)", "无标识（均已关闭）"),
    "lab_nsfw": ("NSFW {score}%", "NSFW {score}%"),
    "lab_action_none": ("allowed", "已放行"),
    "lab_action_blurred": ("blurred", "已模糊"),
    "lab_action_blocked": ("blocked", "已拦截"),
    "lab_applied": ("Labels applied", "已加标识"),
    "lab_visible": ("visible mark “{text}”, {position}", "显式标识“{text}”，{position}"),
    "lab_watermark": ("invisible watermark, payload {payload}", "隐式水印，载荷 {payload}"),
    "lab_metadata": (
        "AIGC metadata (TC260, IPTC), producer {producer}",
        "AIGC 元数据（TC260、IPTC），生产者 {producer}",
    ),
    "lab_c2pa": ("C2PA content credentials", "C2PA 内容凭证"),
    "lab_watermark_small": ("no watermark: the image is too small for one", "无水印：图像太小，无法嵌入"),
    "lab_off": ("off: {names}", "已关闭：{names}"),
    "lab_name_visible": ("visible mark", "显式标识"),
    "lab_name_watermark": ("watermark", "水印"),
    "lab_name_metadata": ("metadata", "元数据"),
    "lab_name_c2pa": ("C2PA", "C2PA"),
    "lab_pos_bottom-right": ("bottom right", "右下角"),
    "lab_pos_bottom-left": ("bottom left", "左下角"),
    "lab_pos_top-right": ("top right", "右上角"),
    "lab_pos_top-left": ("top left", "左上角"),
    "lab_labeling": ("Labeling the image(s)…", "正在为图像加标识…"),
    "gal_col_label": ("Label", "标识"),
    "gal_col_nsfw": ("NSFW", "NSFW"),
}
