"""Real AWS clients resolve the credentials of a running agent (`serve`), and get exactly what the emulator issued.

One agent serves the whole module (IMDS, the container endpoint and the Unix socket of profile "web"); the
credentials it fetched at start stay in service for the module (a 3600 s session, so no refresh happens), and
every client below must come back with those: botocore (IMDS, container endpoint, credential_process), the
AWS CLI (IMDS), the AWS SDK for JavaScript v3 (fromInstanceMetadata, fromContainerMetadata, fromHttp,
fromProcess) and aws-c-auth through the aws-crt npm package (IMDS, container endpoint).
Each client runs in its own process with a clean environment: no AWS_* variables but the ones the test sets,
and HOME, AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE pointing at empty files.
"""

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from radtest.agent import started_agent
from radtest.emulator import create_sessions
from radtest.environment import PYTHON, clean_environment

JS_DIR = Path(__file__).resolve().parent / "js"
CLIENT_TIMEOUT = 60

BOTOCORE_SCRIPT = """
import json, botocore.session
credentials = botocore.session.get_session().get_credentials()
if credentials is None:
    raise SystemExit("botocore found no credentials")
frozen = credentials.get_frozen_credentials()
print(json.dumps({"method": credentials.method, "accessKeyId": frozen.access_key,
                  "secretAccessKey": frozen.secret_key, "sessionToken": frozen.token}))
"""


@pytest.fixture(scope="module")
def served(emulator, pki, tmp_path_factory):
    """A running agent with profile "web" on every surface, and the credentials the emulator issued to it."""
    emulator.reset()
    agent = started_agent(tmp_path_factory.mktemp("agent-clients"), emulator, pki)
    try:
        assert agent.log_lines("refresh_ok"), agent.log()
        issued = emulator.issued()
        assert len(issued) == 1, issued
        agent.expected = issued[0]
        yield agent
    finally:
        status = agent.stop()
    assert status == 0, agent.log()


@pytest.fixture
def client_env(tmp_path):
    """A clean environment for a client process: empty HOME, config and credentials files, no AWS_* variables."""
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "aws-config"
    credentials = tmp_path / "aws-credentials"
    config.write_text("")
    credentials.write_text("")

    def make(**variables):
        env = clean_environment({"HOME": str(home), "AWS_CONFIG_FILE": str(config),
                                 "AWS_SHARED_CREDENTIALS_FILE": str(credentials)})
        env.update(variables)
        return env

    make.config = config
    return make


def run_client(command, env):
    result = subprocess.run(command, capture_output=True, env=env, timeout=CLIENT_TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (command, result.stdout.decode(), result.stderr.decode())
    return json.loads(result.stdout)


def assert_issued(got, agent, with_secret=True):
    expected = agent.expected
    assert got["accessKeyId"] == expected["accessKeyId"]
    assert got["sessionToken"] == expected["sessionToken"]
    if with_secret:
        assert got["secretAccessKey"] == expected["secretAccessKey"]


def ecs_token(agent):
    path = agent.ecs_token_file("web")
    assert stat.S_IMODE(path.stat().st_mode) == 0o400, "the agent creates the token file 0400"
    token = path.read_text()
    assert token and "\n" not in token
    return token


# --- botocore and the AWS CLI (Debian's) -----------------------------------------------------------------


def test_botocore_imds(served, client_env):
    env = client_env(AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{served.imds_port('web')}/")
    got = run_client([PYTHON, "-c", BOTOCORE_SCRIPT], env)
    assert got["method"] == "iam-role"
    assert_issued(got, served)


def test_botocore_container_endpoint(served, client_env):
    # botocore 1.29 (Debian 12) does not read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE; the variable carries the
    # token file's content instead.
    env = client_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=served.ecs_url("web"),
                     AWS_CONTAINER_AUTHORIZATION_TOKEN=ecs_token(served),
                     AWS_EC2_METADATA_DISABLED="true")
    got = run_client([PYTHON, "-c", BOTOCORE_SCRIPT], env)
    assert got["method"] == "container-role"
    assert_issued(got, served)


def test_botocore_credential_process_fast_path(served, client_env):
    env = client_env(AWS_PROFILE="web", AWS_EC2_METADATA_DISABLED="true")
    client_env.config.write_text(f"[profile web]\ncredential_process = {served.credential_process_command('web')}\n")
    before = create_sessions(served.emulator)
    got = run_client([PYTHON, "-c", BOTOCORE_SCRIPT], env)
    assert got["method"] == "custom-process"
    assert_issued(got, served)
    assert create_sessions(served.emulator) == before, "the fast path must not sign a CreateSession"


def test_aws_cli_imds(served, client_env):
    env = client_env(AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{served.imds_port('web')}/")
    got = run_client(["/usr/bin/aws", "configure", "export-credentials", "--format", "process"], env)
    assert got["Version"] == 1
    assert_issued({"accessKeyId": got["AccessKeyId"], "secretAccessKey": got["SecretAccessKey"],
                   "sessionToken": got["SessionToken"]}, served)
    assert got["Expiration"].startswith(served.expected["expiration"][:19])


# Whether Debian's AWS CLI reads AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, as README.md ("Which clients read the
# token file") and docs/clients.md §3.1 state it per release: a version missing here fails the test below, so
# that the table is checked again for it.
AWS_CLI_READS_TOKEN_FILE = {"2.9.19": False,  # Debian 12
                            "2.23.6": True}   # Debian 13


def test_aws_cli_container_token_file_as_the_readme_says(served, client_env):
    version = subprocess.run(["/usr/bin/aws", "--version"], capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
                             stdin=subprocess.DEVNULL).stdout.split()[0].split("/")[1]
    assert version in AWS_CLI_READS_TOKEN_FILE, f"AWS CLI {version}: check the README's token-file table for it"
    env = client_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=served.ecs_url("web"),
                     AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(served.ecs_token_file("web")),
                     AWS_EC2_METADATA_DISABLED="true")
    result = subprocess.run(["/usr/bin/aws", "configure", "export-credentials", "--format", "process"], env=env,
                            capture_output=True, text=True, timeout=CLIENT_TIMEOUT, stdin=subprocess.DEVNULL)
    if AWS_CLI_READS_TOKEN_FILE[version]:
        assert result.returncode == 0, result.stderr
        got = json.loads(result.stdout)
        assert_issued({"accessKeyId": got["AccessKeyId"], "secretAccessKey": got["SecretAccessKey"],
                       "sessionToken": got["SessionToken"]}, served)
    else:
        # No Authorization header sent: the agent answers 401 and the CLI finds no credentials...
        assert result.returncode != 0 and result.stdout == "", (result.returncode, result.stdout)
        # ...while the README's alternative, the token in the variable, works with the same CLI.
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = ecs_token(served)
        got = run_client(["/usr/bin/aws", "configure", "export-credentials", "--format", "process"], env)
        assert_issued({"accessKeyId": got["AccessKeyId"], "secretAccessKey": got["SecretAccessKey"],
                       "sessionToken": got["SessionToken"]}, served)


# --- the AWS SDK for JavaScript v3 and aws-c-auth (npm) --------------------------------------------------


@pytest.fixture(scope="module")
def node():
    """`node` with tests/integration/js/node_modules installed (npm ci from the committed lock file)."""
    node_bin = shutil.which("node")
    npm_bin = shutil.which("npm")
    if node_bin is None or npm_bin is None:
        pytest.fail("node and npm are needed for the JavaScript client tests")
    if not (JS_DIR / "node_modules" / "@aws-sdk" / "credential-providers").is_dir() or \
            not (JS_DIR / "node_modules" / "aws-crt").is_dir():
        result = subprocess.run([npm_bin, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True,
                                timeout=600, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr.decode()[-4000:]
    return node_bin


def run_js(node, kind, env):
    return run_client([node, str(JS_DIR / "credentials.js"), kind], env)


def test_js_from_instance_metadata(served, client_env, node):
    env = client_env(AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{served.imds_port('web')}")
    got = run_js(node, "imds", env)
    assert_issued(got, served)
    assert got["expiration"].startswith(served.expected["expiration"][:19])


def test_js_from_container_metadata(served, client_env, node):
    # The legacy provider reads the token from the variable only (it ignores the _FILE variable).
    env = client_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=served.ecs_url("web"),
                     AWS_CONTAINER_AUTHORIZATION_TOKEN=ecs_token(served))
    assert_issued(run_js(node, "container", env), served)


def test_js_from_http_with_token_file(served, client_env, node):
    env = client_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=served.ecs_url("web"),
                     AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(served.ecs_token_file("web")))
    assert_issued(run_js(node, "http", env), served)


def test_js_from_process_fast_path(served, client_env, node):
    client_env.config.write_text(f"[profile web]\ncredential_process = {served.credential_process_command('web')}\n")
    before = create_sessions(served.emulator)
    got = run_js(node, "process", client_env(RAD_JS_PROFILE="web"))
    assert_issued(got, served)
    assert create_sessions(served.emulator) == before


def test_aws_c_auth_imds(served, client_env, node):
    env = client_env(AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{served.imds_port('web')}")
    assert_issued(run_js(node, "crt", env), served, with_secret=False)


def test_aws_c_auth_container_endpoint(served, client_env, node):
    env = client_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=served.ecs_url("web"),
                     AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(served.ecs_token_file("web")),
                     AWS_EC2_METADATA_DISABLED="true")
    assert_issued(run_js(node, "crt", env), served, with_secret=False)


def test_every_client_used_the_one_cached_session(served):
    """All of the above cost no CreateSession beyond the agent's first one."""
    assert create_sessions(served.emulator) == 1
