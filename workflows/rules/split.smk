rule split_patients:
    input:
        index=f"{RESULTS}/preprocess/{{task}}/index.tsv",
    output:
        split=f"{RESULTS}/splits/{{task}}.json",
    params:
        configfile=CONFIGFILE,
        split=lambda wc: config["tasks"][wc.task]["split"],
    threads: config["resources"]["split"]["threads"]
    resources:
        **stage_resources("split"),
    log:
        f"{LOGS}/split/{{task}}.log",
    benchmark:
        f"{BENCHMARKS}/split/{{task}}.tsv",
    shell:
        "medcnn split --config {params.configfile} --task {wildcards.task} > {log} 2>&1"
