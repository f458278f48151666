rule report_batch:
    input:
        # the members' own manifests: unchanged when only other subjects arrive
        manifests=batch_manifests,
        predictions=expand(f"{RESULTS}/predict/{{task}}/batches/{{{{batch}}}}.tsv", task=TASKS),
        saliency=expand(f"{RESULTS}/saliency/{{task}}/batches/{{{{batch}}}}.tsv", task=TASKS),
    output:
        # lists each subject's results/reports/{subject}.html (and .pdf)
        reports=f"{RESULTS}/reports/batches/{{batch}}.tsv",
    group:
        "batch"
    params:
        medcnn=MEDCNN,
        configfile=CONFIGFILE,
        report=config["report"],
    threads: config["resources"]["report"]["threads"]
    resources:
        **stage_resources("report"),
    log:
        f"{LOGS}/report/{{batch}}.log",
    benchmark:
        f"{BENCHMARKS}/report/{{batch}}.tsv",
    conda:
        "../envs/medcnn.yaml"
    shell:
        "{params.medcnn} report --config {params.configfile} --batch {wildcards.batch} > {log} 2>&1"


rule report_cohort:
    input:
        manifest=f"{RESULTS}/ingest/manifest.tsv",
        quarantine=f"{RESULTS}/ingest/quarantine.tsv",
        predictions=batch_outputs("predict"),
        saliency=batch_outputs("saliency"),
        reports=batch_outputs("reports"),
        metrics=lambda wc: [
            f"{RESULTS}/models/{task}/fold{k}/metrics.json"
            for task in TRAINED
            for k in range(n_folds(task))
        ],
        evaluations=expand(f"{RESULTS}/models/{{task}}/evaluation.json", task=TRAINED),
    output:
        html=report(
            f"{RESULTS}/reports/cohort.html",
            caption="../report/cohort.rst",
            category="Cohort",
            labels={"figure": "cohort report"},
        ),
        metrics=f"{RESULTS}/reports/cohort.json",
        table=f"{RESULTS}/reports/cohort.tsv",
        roc=report(
            expand(f"{RESULTS}/reports/figures/{{task}}_roc.png", task=CLASSIFIERS),
            caption="../report/roc.rst",
            category="Evaluation",
        ),
        reliability=report(
            expand(f"{RESULTS}/reports/figures/{{task}}_reliability.png", task=CLASSIFIERS),
            caption="../report/reliability.rst",
            category="Evaluation",
        ),
        agreement=report(
            expand(f"{RESULTS}/reports/figures/{{task}}_agreement.png", task=SEGMENTERS),
            caption="../report/agreement.rst",
            category="Evaluation",
        ),
        histories=report(
            [
                f"{RESULTS}/reports/figures/{task}_fold{k}_history.png"
                for task in TASKS
                for k in range(n_folds(task))
            ],
            caption="../report/history.rst",
            category="Training",
        ),
    params:
        medcnn=MEDCNN,
        configfile=CONFIGFILE,
        report=config["report"],
    threads: config["resources"]["report"]["threads"]
    resources:
        **stage_resources("report"),
    log:
        f"{LOGS}/report/cohort.log",
    benchmark:
        f"{BENCHMARKS}/report/cohort.tsv",
    conda:
        "../envs/medcnn.yaml"
    shell:
        "{params.medcnn} report --config {params.configfile} --cohort > {log} 2>&1"
