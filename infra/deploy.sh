#!/usr/bin/env bash
# Deploys infra/template.yaml with the AWS CLI and connects the demo's Feast repository to it.
#
#   infra/deploy.sh [all]   deploy, upload, schema, yaml (in that order)
#   infra/deploy.sh deploy  create or update the stack (a change set; waits for it)
#   infra/deploy.sh upload  the demo's parquet files (make data) to s3://<bucket>/offline/
#   infra/deploy.sh schema  Spectrum's external schema over the Glue database (Redshift Data API)
#   infra/deploy.sh yaml    write feature_repo/feature_store.aws.yaml from the stack's outputs
#   infra/deploy.sh env     print `export FEAST_REDIS_PASSWORD=...` (use: eval "$(infra/deploy.sh env)")
#   infra/deploy.sh status  the stack's status and outputs
#   infra/deploy.sh delete  delete the stack (the key, the buckets and a final Redshift snapshot stay)
#
# Settings come from infra/config (see infra/config.example), or the file CONFIG names.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
CONFIG="${CONFIG:-$HERE/config}"
STATEMENT_TIMEOUT_SECONDS=300

die() {
	echo "deploy.sh: $*" >&2
	exit 1
}

load_config() {
	[[ -f "$CONFIG" ]] || die "no configuration at $CONFIG: copy infra/config.example to infra/config and fill it in (or set CONFIG=path/to/file)"
	# shellcheck source-path=SCRIPTDIR source=config.example
	source "$CONFIG"
	local name
	for name in STACK_NAME PROJECT_NAME VPC_ID SUBNET_IDS; do
		[[ -n "${!name:-}" ]] || die "$name is not set in $CONFIG"
	done
	CACHE_MODE="${CACHE_MODE:-Serverless}"
	FEAST_PROJECT="${FEAST_PROJECT:-credit_scoring}"
	SPECTRUM_SCHEMA="${SPECTRUM_SCHEMA:-feast_spectrum}"
	DATA_DIR="${DATA_DIR:-$ROOT/data}"
}

require_aws() {
	command -v aws >/dev/null 2>&1 ||
		die "the AWS CLI (aws) is not on PATH: install AWS CLI v2, https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
	command -v python3 >/dev/null 2>&1 || die "python3 is not on PATH (it writes feature_store.aws.yaml)"
	REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region 2>/dev/null || true)}}"
	[[ -n "$REGION" ]] || die "no AWS region: set AWS_REGION in $CONFIG or in the environment, or run aws configure"
	local identity
	identity="$(aws sts get-caller-identity --region "$REGION" --query Arn --output text 2>&1)" ||
		die "no usable AWS credentials (aws sts get-caller-identity: ${identity##*$'\n'}): run aws configure or aws sso login, or set AWS_PROFILE"
	echo "deploy.sh: as $identity in $REGION, stack $STACK_NAME" >&2
}

output() {
	aws cloudformation describe-stacks --region "$REGION" --stack-name "$STACK_NAME" \
		--query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}

deploy() {
	local parameters=(
		"ProjectName=$PROJECT_NAME"
		"VpcId=$VPC_ID"
		"SubnetIds=$SUBNET_IDS"
		"AppSecurityGroupId=${APP_SECURITY_GROUP_ID:-}"
		"CacheMode=$CACHE_MODE"
	)
	# shellcheck disable=SC2206 # Key=Value pairs split on spaces, as documented
	parameters+=(${EXTRA_PARAMETERS:-})
	aws cloudformation deploy --region "$REGION" --stack-name "$STACK_NAME" \
		--template-file "$HERE/template.yaml" --capabilities CAPABILITY_IAM \
		--no-fail-on-empty-changeset --parameter-overrides "${parameters[@]}"
}

upload() {
	local bucket table file
	bucket="$(output FeastS3BucketUri)"
	for table in zipcode_features:zipcode_table credit_history:credit_history loan_features:loan_table; do
		file="$DATA_DIR/${table#*:}.parquet"
		[[ -f "$file" ]] || die "$file is missing: run make data first (or set DATA_DIR)"
		aws s3 cp --region "$REGION" "$file" "$bucket/offline/${table%%:*}/${table#*:}.parquet"
	done
}

schema() {
	local cluster database user role glue sql id status
	cluster="$(output RedshiftClusterIdentifier)"
	database="$(output RedshiftDatabaseName)"
	user="$(output RedshiftAdminUser)"
	role="$(output RedshiftSpectrumArn)"
	glue="$(output GlueDatabaseName)"
	sql="CREATE EXTERNAL SCHEMA IF NOT EXISTS $SPECTRUM_SCHEMA FROM DATA CATALOG DATABASE '$glue' IAM_ROLE '$role'"
	id="$(aws redshift-data execute-statement --region "$REGION" --cluster-identifier "$cluster" \
		--database "$database" --db-user "$user" --sql "$sql" --query Id --output text)"
	for ((waited = 0; waited < STATEMENT_TIMEOUT_SECONDS; waited += 2)); do
		status="$(aws redshift-data describe-statement --region "$REGION" --id "$id" --query Status --output text)"
		case "$status" in
		FINISHED)
			echo "deploy.sh: external schema $SPECTRUM_SCHEMA reads Glue database $glue" >&2
			return
			;;
		FAILED | ABORTED)
			die "creating schema $SPECTRUM_SCHEMA $status: $(aws redshift-data describe-statement --region "$REGION" --id "$id" --query Error --output text)"
			;;
		esac
		sleep 2
	done
	die "creating schema $SPECTRUM_SCHEMA: statement $id still $status after ${STATEMENT_TIMEOUT_SECONDS}s"
}

write_yaml() {
	local target="$ROOT/feature_repo/feature_store.aws.yaml"
	aws cloudformation describe-stacks --region "$REGION" --stack-name "$STACK_NAME" \
		--query "Stacks[0].Outputs" --output json |
		python3 "$HERE/feature_store_yaml.py" --region "$REGION" --stack "$STACK_NAME" \
			--project "$FEAST_PROJECT" >"$target.new"
	mv "$target.new" "$target"
	echo "deploy.sh: wrote $target; then: eval \"\$(infra/deploy.sh env)\" && cd feature_repo && FEAST_OFFLINE_STORE=redshift feast -f feature_store.aws.yaml apply" >&2
}

print_env() {
	aws secretsmanager get-secret-value --region "$REGION" --secret-id "$(output RedisSecretArn)" \
		--query SecretString --output text |
		python3 -c 'import json, shlex, sys; print("export FEAST_REDIS_PASSWORD=" + shlex.quote(json.load(sys.stdin)["password"]))'
}

status() {
	aws cloudformation describe-stacks --region "$REGION" --stack-name "$STACK_NAME" \
		--query "Stacks[0].StackStatus" --output text
	aws cloudformation describe-stacks --region "$REGION" --stack-name "$STACK_NAME" \
		--query "Stacks[0].Outputs[].[OutputKey, OutputValue]" --output table
}

delete() {
	local key logs data
	key="$(output KmsKeyArn)"
	logs="$(output LogsBucketName)"
	data="$(output FeastS3BucketUri)"
	aws cloudformation delete-stack --region "$REGION" --stack-name "$STACK_NAME"
	aws cloudformation wait stack-delete-complete --region "$REGION" --stack-name "$STACK_NAME"
	cat >&2 <<EOF
deploy.sh: stack $STACK_NAME deleted. Kept on purpose (they hold data), remove them when done:
  aws redshift describe-cluster-snapshots --region $REGION --snapshot-type manual  (the final snapshot of $PROJECT_NAME)
  aws s3 rb --region $REGION --force $data  (versioned: empty its versions first)
  aws s3 rb --region $REGION --force s3://$logs
  aws kms schedule-key-deletion --region $REGION --key-id $key --pending-window-in-days 30
EOF
}

main() {
	local command="${1:-all}"
	case "$command" in
	all | deploy | upload | schema | yaml | env | status | delete) ;;
	-h | --help | help)
		sed -n '2,14p' "$0"
		return
		;;
	*) die "unknown command '$command' (deploy, upload, schema, yaml, env, status, delete, all)" ;;
	esac
	load_config
	require_aws
	case "$command" in
	all)
		deploy
		upload
		schema
		write_yaml
		;;
	deploy) deploy ;;
	upload) upload ;;
	schema) schema ;;
	yaml) write_yaml ;;
	env) print_env ;;
	status) status ;;
	delete) delete ;;
	esac
}

main "$@"
