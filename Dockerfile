# medcnn's software stack in one image: the same packages as workflows/envs/medcnn.yaml
# (Python 3.11, the CPU build of torch 2.13.0, medcnn's dependencies) with medcnn itself
# installed. Build and use it with Snakemake's apptainer integration:
#   docker build -t medcnn:0.1.0 .            (or: apptainer build medcnn.sif workflows/containers/medcnn.def)
#   snakemake --sdm apptainer --cores 8 --configfile my-config.yaml
FROM python:3.11-slim-bookworm
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
RUN apt-get update && apt-get install -y --no-install-recommends procps \
    && rm -rf /var/lib/apt/lists/*
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /opt/medcnn
COPY pyproject.toml README.md ./
COPY medcnn ./medcnn
RUN pip install . && medcnn --help > /dev/null
