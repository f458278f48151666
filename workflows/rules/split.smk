rule split_patients:
    input:
        index=f"{RESULTS}/preprocess/{{task}}/index.tsv",
    output:
        split=f"{RESULTS}/splits/{{task}}.json",
    params:
        medcnn=MEDCNN,
        configfile=CONFIGFILE,
        split=lambda wc: config["tasks"][wc.task]["split"],
    threads: config["resources"]["split"]["threads"]
    resources:
        **stage_resources("split"),
    log:
        f"{LOGS}/split/{{task}}.log",
    benchmark:
        f"{BENCHMARKS}/split/{{task}}.tsv",
    conda:
        "../envs/medcnn.yaml"
    shell:
        "{params.medcnn} split --config {params.configfile} --task {wildcards.task} > {log} 2>&1"
