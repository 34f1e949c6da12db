# AIGC Studio with the ray extra: one image for the gateway and for Ray worker nodes.
# Not built or run by this project's checks (no Docker daemon, and no registry for the base image, on
# the machines that build it); README "Scale-out with Ray Serve" says how it is meant to be used.
FROM python:3.11-slim-bookworm
# setup.sh installs Debian's bubblewrap, nodejs and the Chinese font for the visible mark itself.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        bubblewrap nodejs util-linux fonts-wqy-microhei && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/aigc
COPY . .
RUN bash setup.sh && .venv/bin/pip install --no-cache-dir -e ".[ray]"
ENV PATH=/opt/aigc/.venv/bin:$PATH AIGC_HOME=/data/aigc
EXPOSE 7860
# The gateway, with a local Ray cluster in its own process. On a cluster: `ray start ...` in each
# container, then `aigc serve --ray --address auto` on the head (README).
CMD ["aigc", "serve", "--ray"]
