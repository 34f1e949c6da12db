"""The studio's own API under /api: files and records that the other APIs point to."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from ...errors import NotFound
from ...studio import Studio
from ..deps import get_studio

router = APIRouter(prefix="/api", tags=["studio"])


@router.get("/images/{image_id}.png")
def image_file(image_id: str, studio: Studio = Depends(get_studio)) -> FileResponse:
    row = studio.db.conn.execute("SELECT path FROM images WHERE id = ?", (image_id,)).fetchone()
    if row is None:
        raise NotFound(f"no image with id '{image_id}'")
    return FileResponse(row["path"], media_type="image/png")


@router.get("/images")
def list_images(limit: int = 50, q: str | None = None, studio: Studio = Depends(get_studio)) -> list[dict]:
    return studio.images.list(limit=limit, query=q)


@router.get("/jobs/{job_id}")
def job_state(job_id: str, studio: Studio = Depends(get_studio)) -> dict:
    job = studio.jobs.get(job_id)
    if job is None:
        row = studio.db.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no job with id '{job_id}'")
        return dict(row)
    return {
        "id": job.id,
        "state": job.state,
        "progress": job.progress,
        "eta": job.eta,
        "step": job.step,
        "steps": job.steps,
        "batch": job.batch,
        "batches": job.batches,
        "error": job.error,
    }
