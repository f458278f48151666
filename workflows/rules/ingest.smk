checkpoint ingest_scans:
    input:
        scans=INPUT_FOLDERS,
        labels=[config["labels"]["path"]] if config["labels"]["path"] else [],
    output:
        manifest=f"{RESULTS}/ingest/manifest.tsv",
        quarantine=f"{RESULTS}/ingest/quarantine.tsv",
        batches=f"{RESULTS}/ingest/batches.tsv",
    params:
        medcnn=MEDCNN,
        # new or changed files anywhere below the inputs re-run ingest (folder mtimes do not)
        inventory=lambda wildcards: inventory_digest(INPUT_FOLDERS),
        configfile=CONFIGFILE,
        # What the outputs depend on (the secret stays out: params are stored in .snakemake).
        labels=config["labels"],
        inputs=config["inputs"],  # patterns, masks/instances regexes: how files are read
        ingest=config["ingest"],
        keep_identifiers=config["deid"]["keep_identifiers"],
        batches=config["batches"],
    threads: config["resources"]["ingest"]["threads"]
    resources:
        **stage_resources("ingest"),
    log:
        f"{LOGS}/ingest/ingest_scans.log",
    benchmark:
        f"{BENCHMARKS}/ingest/ingest_scans.tsv",
    conda:
        "../envs/medcnn.yaml"
    shell:
        "{params.medcnn} ingest --config {params.configfile} --threads {threads} > {log} 2>&1"
