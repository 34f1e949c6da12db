"""The A1111 API's field policy, on a live server with the plain engine: every A1111 request field is
honoured or refused with a 422 that names it, what a client leaves out takes A1111's API default, sampler
names carry schedule types, infotext fills unset fields, override_settings apply per request."""

from __future__ import annotations

import base64
import io
import json
import os

import pytest
from PIL import Image

from aigc_studio.config import load_config
from aigc_studio.contracts import ImageRequest
from aigc_studio.studio import Studio

from .conftest import a1111_server
from .test_sdapi import b64png, img2img_body, jobs, last_request, post, small


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    os.environ["AIGC_HOME"] = str(tmp_path_factory.mktemp("sdapi-fields-home"))
    studio = Studio(load_config(model="echo", image_model="plain"))
    with a1111_server(studio) as live:
        yield live
    studio.close()


# ---------------------------------------------------------------------------------------------------
# The field policy: every A1111 field honoured or refused, A1111's defaults, options, infotext.

# A1111 1.10's API request fields (modules/api/models.py over modules/processing.py's dataclasses, less its
# API_NOT_ALLOWED), read from its source: the field table must hold exactly these, each with a policy.
A1111_COMMON = {
    "prompt",
    "negative_prompt",
    "styles",
    "seed",
    "subseed",
    "subseed_strength",
    "seed_resize_from_h",
    "seed_resize_from_w",
    "sampler_name",
    "scheduler",
    "batch_size",
    "n_iter",
    "steps",
    "cfg_scale",
    "width",
    "height",
    "restore_faces",
    "tiling",
    "do_not_save_samples",
    "do_not_save_grid",
    "eta",
    "denoising_strength",
    "s_min_uncond",
    "s_churn",
    "s_tmax",
    "s_tmin",
    "s_noise",
    "override_settings",
    "override_settings_restore_afterwards",
    "refiner_checkpoint",
    "refiner_switch_at",
    "disable_extra_networks",
    "firstpass_image",
    "comments",
    "sampler_index",
    "script_name",
    "script_args",
    "send_images",
    "save_images",
    "alwayson_scripts",
    "force_task_id",
    "infotext",
}
A1111_HIRES = {
    "enable_hr",
    "firstphase_width",
    "firstphase_height",
    "hr_scale",
    "hr_upscaler",
    "hr_second_pass_steps",
    "hr_resize_x",
    "hr_resize_y",
    "hr_checkpoint_name",
    "hr_sampler_name",
    "hr_scheduler",
    "hr_prompt",
    "hr_negative_prompt",
}
A1111_IMG2IMG_ONLY = {
    "init_images",
    "resize_mode",
    "image_cfg_scale",
    "mask",
    "mask_blur_x",
    "mask_blur_y",
    "mask_blur",
    "mask_round",
    "inpainting_fill",
    "inpaint_full_res",
    "inpaint_full_res_padding",
    "inpainting_mask_invert",
    "initial_noise_multiplier",
    "latent_mask",
    "include_init_images",
}
A1111_TXT2IMG = A1111_COMMON | A1111_HIRES
A1111_IMG2IMG = A1111_COMMON | A1111_IMG2IMG_ONLY

# A value other than the studio's default for each honoured field, and what the queued request then holds.
HONOURED = {
    "prompt": "a red fox",
    "negative_prompt": "blurry",
    "seed": 123,
    "subseed": 456,
    "subseed_strength": 0.25,
    "sampler_name": "Euler a",  # a sampler that takes both a schedule type and an eta
    "scheduler": "Karras",
    "batch_size": 2,
    "n_iter": 2,
    "steps": 3,
    "cfg_scale": 4.5,
    "width": 72,
    "height": 80,
    "tiling": True,
    "eta": 0.4,
    "s_min_uncond": 1.5,
    "denoising_strength": 0.6,
    "enable_hr": True,
    "hr_scale": 1.5,
    "hr_upscaler": "Latent (nearest)",
    "hr_second_pass_steps": 2,
    "hr_resize_x": 96,
    "hr_resize_y": 112,
    "hr_sampler_name": "Euler",
    "hr_scheduler": "Exponential",
    "hr_prompt": "sharp",
    "hr_negative_prompt": "soft",
    "resize_mode": 1,
    "image_cfg_scale": 2.5,
    "mask_blur": 2,
    "inpainting_fill": 2,
    "inpaint_full_res": False,
    "inpaint_full_res_padding": 8,
    "inpainting_mask_invert": 1,
}


def test_the_field_table_holds_a1111s_fields_and_webuiapis_payload():
    import webuiapi

    from aigc_studio.services.a1111_fields import IMG2IMG, TXT2IMG, Honoured

    assert set(TXT2IMG) == A1111_TXT2IMG
    assert set(IMG2IMG) == A1111_IMG2IMG
    honoured = {p.field for table in (TXT2IMG, IMG2IMG) for p in table.values() if isinstance(p, Honoured)}
    assert honoured == set(HONOURED)
    # what webuiapi sends by default: every key is an A1111 field (port 1: nothing listens, nothing is sent)
    sent = {}
    api = webuiapi.WebUIApi(host="127.0.0.1", port=1)
    api.post_and_get_api_result = lambda url, json, use_async: sent.setdefault(url.rsplit("/", 1)[1], json)
    api.txt2img(prompt="x")
    api.img2img(images=[Image.new("RGB", (8, 8))], mask_image=Image.new("L", (8, 8)))
    assert set(sent["txt2img"]) <= A1111_TXT2IMG and set(sent["img2img"]) <= A1111_IMG2IMG
    assert (sent["img2img"]["inpaint_full_res"], sent["img2img"]["inpainting_fill"]) == (True, 0)


@pytest.mark.parametrize("endpoint", ["txt2img", "img2img"])
def test_every_honoured_field_reaches_the_queued_request(server, endpoint):
    from aigc_studio.services.a1111_fields import IMG2IMG, TXT2IMG, Honoured

    table = TXT2IMG if endpoint == "txt2img" else IMG2IMG
    sent = {name: HONOURED[p.field] for name, p in table.items() if isinstance(p, Honoured)}
    body = img2img_body(**sent) if endpoint == "img2img" else small(**sent)
    if endpoint == "img2img":
        mask = Image.new("L", (64, 64), 0)
        mask.paste(255, (0, 0, 32, 64))
        body["mask"] = b64png(mask)
    r = post(server, endpoint, **body)
    assert r.status_code == 200, r.text
    queued = last_request(server)
    assert {name: queued[p.field] for name, p in table.items() if isinstance(p, Honoured)} == sent
    info = json.loads(r.json()["info"])
    assert info["sampler_name"] == "Euler a" and info["scheduler"] == "Karras" and info["all_seeds"][0] == 123
    assert len(r.json()["images"]) == 4
    assert "Steps: 3, Sampler: Euler a, Schedule type: Karras" in info["infotexts"][0]


def test_what_a_client_leaves_out_takes_a1111s_api_default(server):
    r = post(server, "txt2img", prompt="defaults", width=64, height=64, seed=3)
    info = json.loads(r.json()["info"])
    assert (info["steps"], info["sampler_name"], info["cfg_scale"]) == (50, "Euler", 7)
    assert info["infotexts"][0].startswith(
        "defaults\nSteps: 50, Sampler: Euler, Schedule type: Automatic, CFG scale: 7"
    )
    r = post(server, "img2img", **img2img_body(mask=b64png(Image.new("L", (64, 64), 255)), steps=None))
    assert r.status_code == 200, r.text
    queued = last_request(server)
    assert (queued["steps"], queued["sampler_name"]) == (50, "Euler")
    assert (queued["inpainting_fill"], queued["inpaint_full_res"], queued["inpaint_full_res_padding"]) == (0, True, 0)
    # the studio's own defaults stay for its own shells
    studio_default = ImageRequest()
    assert (studio_default.steps, studio_default.sampler_name, studio_default.inpaint_full_res) == (
        20,
        "Euler a",
        False,
    )


@pytest.mark.parametrize(
    "endpoint, body, named",
    [
        ("txt2img", {"restore_faces": True}, "restore_faces: the studio has no face restoration model"),
        ("txt2img", {"styles": ["cinematic"]}, "styles: no style 'cinematic'; the styles are: none"),
        ("txt2img", {"refiner_checkpoint": "sdxl-refiner"}, "refiner_checkpoint: the studio has no refiner pass"),
        ("txt2img", {"script_name": "x/y/z plot"}, "script_name: Script 'x/y/z plot' not found"),
        (
            "txt2img",
            {"alwayson_scripts": {"ADetailer": {"args": [True]}}},
            "alwayson_scripts: always on script 'ADetailer' not found",
        ),
        ("txt2img", {"seed_resize_from_w": 512, "seed_resize_from_h": 512}, "seed_resize_from_h: the studio cannot"),
        ("txt2img", {"hr_checkpoint_name": "other"}, "hr_checkpoint_name: the studio's hires fix runs its second"),
        ("txt2img", {"firstphase_width": 256}, "firstphase_width: A1111's old hires fix sizes"),
        ("txt2img", {"s_churn": 1.5}, "s_churn: the studio's samplers add no sigma churn; accepted only as 0 or 0.0"),
        ("txt2img", {"firstpass_image": "abc"}, "firstpass_image: the studio's hires fix starts"),
        ("txt2img", {"model": "plain"}, "model: A1111's txt2img request has no such field"),
        ("txt2img", {"cfg": 7}, "cfg: A1111's txt2img request has no such field; did you mean 'cfg_scale'?"),
        ("txt2img", {"mask": "abc"}, "mask: A1111's txt2img request has no such field"),
        ("txt2img", {"override_settings": {"no_such_option": 1}}, "override_settings.no_such_option: not an A1111"),
        ("txt2img", {"override_settings": {"eta_noise_seed_delta": 31337}}, "override_settings.eta_noise_seed_delta"),
        ("txt2img", {"override_settings": {"face_restoration": True}}, "override_settings.face_restoration"),
        ("txt2img", {"override_settings": {"CLIP_stop_at_last_layers": 13}}, "CLIP_stop_at_last_layers: Input"),
        ("txt2img", {"infotext": "x\nSteps: 3, Seed: 4, ENSD: 31337"}, "infotext 'ENSD' (eta_noise_seed_delta)"),
        ("txt2img", {"sampler_name": "Euler a Uniform"}, "unknown sampler 'Euler a Uniform'"),
        ("txt2img", {"hr_upscaler": "R-ESRGAN 4x+"}, "unknown hires upscaler 'R-ESRGAN 4x+'"),
        (
            "txt2img",
            {"override_settings": {"tiling": True}, "override_settings_restore_afterwards": False},
            "override_settings_restore_afterwards: false keeps the overrides",
        ),
        ("img2img", {"initial_noise_multiplier": 0.5}, "initial_noise_multiplier: the studio does not scale"),
        ("img2img", {"latent_mask": "abc"}, "latent_mask: the studio has no separate latent mask"),
        ("img2img", {"mask_round": False}, "mask_round: the studio always rounds"),
        ("img2img", {"mask_blur_x": -1, "mask_blur": 4}, "mask_blur_x: Input should be greater than or equal to 0"),
        ("img2img", {"enable_hr": True}, "enable_hr: A1111's img2img request has no such field"),
    ],
)
def test_a_field_the_studio_cannot_honour_is_a_422_naming_it_and_queues_nothing(server, endpoint, body, named):
    before = jobs(server)
    r = post(server, endpoint, **(img2img_body(**body) if endpoint == "img2img" else small(**body)))
    assert r.status_code == 422 and named in r.json()["detail"], r.text
    assert set(r.json()) == {"error", "detail", "body", "errors"}  # A1111's error shape
    assert jobs(server) == before


def test_mask_blur_x_and_y_are_honoured_apart_unless_mask_blur_sets_both(server):
    mask = b64png(Image.new("L", (64, 64), 255))
    assert post(server, "img2img", **img2img_body(mask=mask, mask_blur_x=2, mask_blur_y=6)).status_code == 200
    queued = last_request(server)
    assert (queued["mask_blur_x"], queued["mask_blur_y"]) == (2, 6)
    # A1111: mask_blur sets both directions, whatever mask_blur_x and mask_blur_y say
    assert post(server, "img2img", **img2img_body(mask=mask, mask_blur=3, mask_blur_x=2)).status_code == 200
    queued = last_request(server)
    assert (queued["mask_blur"], queued["mask_blur_x"], queued["mask_blur_y"]) == (3, None, None)


def test_every_refusal_in_one_answer(server):
    r = post(server, "txt2img", **small(restore_faces=True, styles=["a"], tiling=True, foo=1))
    detail = r.json()["detail"]
    assert r.status_code == 422 and all(f in detail for f in ("restore_faces:", "styles:", "foo:"))
    assert "tiling" not in detail


@pytest.mark.parametrize(
    "body",
    [
        {"s_tmax": 5.0, "s_tmin": 0.5, "s_noise": 1.003},
        {"force_task_id": "task(abc)", "comments": {"note": 1}, "do_not_save_grid": True},
        {"refiner_switch_at": 0.8, "refiner_checkpoint": "None", "disable_extra_networks": True},
        {"script_args": [1, 2], "alwayson_scripts": {}, "styles": [], "seed_resize_from_h": -1},
        {"hr_checkpoint_name": "Use same checkpoint", "hr_sampler_name": "Use same sampler"},
        {"override_settings": {"samples_format": "jpg", "outdir_samples": "/tmp/x", "sd_vae": "None"}},
    ],
)
def test_fields_that_change_no_image_are_accepted(server, body):
    r = post(server, "txt2img", **small(**body))
    assert r.status_code == 200, r.text


def test_sampler_names_with_a_schedule_type_are_split(server):
    r = server.api.txt2img(prompt="k", sampler_name="DPM++ 2M Karras", seed=5, steps=2, width=64, height=64)
    assert (r.info["sampler_name"], r.info["scheduler"]) == ("DPM++ 2M", "Karras")
    assert "Steps: 2, Sampler: DPM++ 2M, Schedule type: Karras," in r.info["infotexts"][0]
    r = post(server, "txt2img", **small(sampler_index="Euler a Exponential"))
    assert "Sampler: Euler a, Schedule type: Exponential" in json.loads(r.json()["info"])["infotexts"][0]
    # a schedule type the request names itself wins over the one in the sampler name, as in A1111
    r = post(server, "txt2img", **small(sampler_name="DPM++ 2M Karras", scheduler="sgm_uniform"))
    assert json.loads(r.json()["info"])["scheduler"] == "SGM Uniform"
    post(server, "txt2img", **small(enable_hr=True, hr_sampler_name="DPM++ SDE Karras"))
    queued = last_request(server)
    assert (queued["hr_sampler_name"], queued["hr_scheduler"]) == ("DPM++ SDE", "Karras")


def test_the_cli_splits_a_sampler_name_too(aigc_home, tmp_path):
    from click.testing import CliRunner

    from aigc_studio.cli.main import cli

    out = tmp_path / "k.png"
    r = CliRunner().invoke(
        cli,
        [
            "image",
            "k",
            "-m",
            "plain",
            "--sampler",
            "DPM++ 2M Karras",
            "--steps",
            "2",
            "--size",
            "64x64",
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "Steps: 2, Sampler: DPM++ 2M, Schedule type: Karras," in Image.open(out).info["parameters"]


def test_do_not_save_samples_keeps_no_file_and_no_record(server, aigc_home):
    images = server.studio.config.outputs_dir / "images"
    files = set(images.rglob("*.png")) if images.exists() else set()
    rows = server.studio.db.conn.execute("SELECT count(*) FROM images").fetchone()[0]
    r = post(server, "txt2img", **small(do_not_save_samples=True, batch_size=2))
    sent = [Image.open(io.BytesIO(base64.b64decode(b))) for b in r.json()["images"]]
    assert [i.size for i in sent] == [(64, 64), (64, 64)] and "Seed: 2," in sent[1].info["parameters"]
    assert server.studio.db.conn.execute("SELECT count(*) FROM images").fetchone()[0] == rows
    assert (set(images.rglob("*.png")) if images.exists() else set()) == files
    # webuiapi sends save_images=False: the studio keeps the image all the same (README, OpenAPI)
    server.api.txt2img(prompt="kept", seed=1, steps=1, width=64, height=64)
    assert server.studio.db.conn.execute("SELECT count(*) FROM images").fetchone()[0] == rows + 1


def test_infotext_fills_the_fields_the_request_does_not_set(server):
    infotext = (
        "a castle on a hill\nNegative prompt: fog\n"
        "Steps: 3, Sampler: Euler a, Schedule type: Karras, CFG scale: 5.5, Seed: 77, Size: 64x64, Clip skip: 2,"
        " Model: somewhere-else, Version: v1.10.1"
    )
    r = post(server, "txt2img", infotext=infotext, steps=2, seed=78)
    info = json.loads(r.json()["info"])
    assert (info["prompt"], info["negative_prompt"], info["sampler_name"], info["scheduler"]) == (
        "a castle on a hill",
        "fog",
        "Euler a",
        "Karras",
    )
    assert (info["steps"], info["seed"], info["cfg_scale"], info["width"]) == (2, 78, 5.5, 64)  # the request's win
    assert info["sd_model_name"] == "plain"  # the model stays, as with A1111's default
    assert ", Clip skip: 2," in info["infotexts"][0]
    # a hires parameter with a denoising strength turns the hires fix on, as A1111's paste does
    hires = (
        "a castle\nSteps: 3, Seed: 5, Size: 64x64, Denoising strength: 0.4, Hires upscale: 1.5, Hires upscaler: Latent"
    )
    assert post(server, "txt2img", infotext=hires, steps=1).status_code == 200
    queued = last_request(server)
    assert (queued["enable_hr"], queued["hr_scale"], queued["denoising_strength"]) == (True, 1.5, 0.4)


def test_clip_skip_by_override_settings(server):
    r = post(server, "txt2img", **small(override_settings={"CLIP_stop_at_last_layers": 2}))
    assert ", Clip skip: 2," in json.loads(r.json()["info"])["infotexts"][0]
    r = post(server, "txt2img", **small())
    assert "Clip skip" not in json.loads(r.json()["info"])["infotexts"][0]  # restored afterwards


def test_eta_and_tiling_options_apply_where_a1111_applies_them(server):
    post(server, "txt2img", **small(sampler_name="Euler a", override_settings={"eta_ancestral": 0.5, "tiling": True}))
    assert (last_request(server)["eta"], last_request(server)["tiling"]) == (0.5, True)
    post(server, "txt2img", **small(sampler_name="DDIM", override_settings={"eta_ancestral": 0.5, "eta_ddim": 0.2}))
    assert last_request(server)["eta"] == 0.2
    post(server, "txt2img", **small(sampler_name="Euler a", eta=0.9, override_settings={"eta_ancestral": 0.5}))
    assert last_request(server)["eta"] == 0.9  # the request's own field wins
