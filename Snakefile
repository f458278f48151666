# medcnn: scan folders -> trained models, predictions, saliency maps and per-patient reports.
# Run: snakemake --cores N   (config/config.yaml runs the bundled demo)
import sys

from snakemake.utils import min_version

from medcnn.config import ConfigError, validate_config

min_version("8.20")


# The bundled demo's config, unless the command line names one: then that file alone is the
# config. (Snakemake would otherwise merge a --configfile into this one, the demo's tasks and
# inputs included, while the steps read only the user's file.)
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"



# The package's own validation (the same schema, defaults filled in): on an error it names
# the key and the problem in a few lines, where snakemake's validate prints the whole schema.
try:
    config.update(validate_config(config))
except ConfigError as exc:
    print(
        f"medcnn: {exc}\nFix the config file (`medcnn validate --config FILE` checks it).",
        file=sys.stderr,
    )
    sys.exit(2)


# The software stack of every rule under --sdm apptainer: the image built from
# workflows/containers/medcnn.def (each rule also names its conda environment, for --sdm conda).
container: f"{workflow.basedir}/workflows/containers/medcnn.sif"


include: "workflows/rules/common.smk"
include: "workflows/rules/demo.smk"
include: "workflows/rules/ingest.smk"
include: "workflows/rules/preprocess.smk"
include: "workflows/rules/split.smk"
include: "workflows/rules/train.smk"
include: "workflows/rules/predict.smk"
include: "workflows/rules/saliency.smk"
include: "workflows/rules/report.smk"


localrules:
    all,


rule all:
    input:
        all_reports,
