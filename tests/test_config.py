"""Per-repo config: parsing, validation messages, loading from the twin, use."""

from __future__ import annotations

import aiohttp
import gidgethub
import gidgethub.aiohttp
import pytest

from bot.config import (
    CONFIG_PATH,
    DEFAULT_MODELS,
    AgentConfig,
    RepoConfig,
    UnknownModelAlias,
    effective_rounds,
    effective_timeout,
    is_forbidden,
    load_repo_config,
    parse_config,
    resolve_model,
)
from bot.settings import load_settings

FULL = """\
trigger_label: agent
models: {opus: claude-opus-4-6, sonnet: claude-sonnet-4-5, fast: claude-haiku-4-5}
label_models: {architecture: opus, chore: fast}
agent: {backend: claude-code, args: ["--verbose"], timeout: 1800}
max_ci_rounds: 2
max_review_rounds: 0
setup_commands: ["pip install -e ."]
test_commands: ["pytest -q"]
forbidden_paths: ["secrets/**", ".github/workflows/**"]
prompt: "extra guidance for every session in this repo"
allowed_bots: ["dependabot[bot]"]
"""


def settings(**env: object):
    return load_settings(_env_file=None, WEBHOOK_SECRET="s", **env)


# -- parsing ---------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "   \n", "# only a comment\n"])
def test_no_content_is_the_defaults_without_a_message(text):
    config, message = parse_config(text)
    assert message is None
    assert config == RepoConfig()
    assert config.trigger_label == "agent"
    assert config.models == DEFAULT_MODELS
    assert config.label_models == {}
    assert config.agent == AgentConfig(backend=None, args=[], timeout=None)
    assert config.max_ci_rounds is None and config.max_review_rounds is None
    assert config.setup_commands == config.test_commands == config.forbidden_paths == []
    assert config.prompt == "" and config.allowed_bots == []
    assert config.prompt_comments == "writers"


def test_the_full_example_parses():
    config, message = parse_config(FULL)
    assert message is None
    assert config.trigger_label == "agent"
    assert config.models == {
        "opus": "claude-opus-4-6",
        "sonnet": "claude-sonnet-4-5",
        "fast": "claude-haiku-4-5",
    }
    assert config.label_models == {"architecture": "opus", "chore": "fast"}
    assert config.agent == AgentConfig(backend="claude-code", args=["--verbose"], timeout=1800)
    assert (config.max_ci_rounds, config.max_review_rounds) == (2, 0)
    assert config.setup_commands == ["pip install -e ."]
    assert config.test_commands == ["pytest -q"]
    assert config.forbidden_paths == ["secrets/**", ".github/workflows/**"]
    assert config.prompt == "extra guidance for every session in this repo"
    assert config.allowed_bots == ["dependabot[bot]"]


def test_keys_are_merged_over_the_defaults():
    config, message = parse_config("models: {fast: claude-haiku-4-5, Opus: my-opus}\ntest_commands: make test\n")
    assert message is None
    # Default aliases stay, a repo's alias of the same name (any case) wins.
    assert config.models == {"opus": "my-opus", "sonnet": "claude-sonnet-4-5", "fast": "claude-haiku-4-5"}
    # A single command is a list of one.
    assert config.test_commands == ["make test"]
    assert config.trigger_label == "agent"


def test_prompt_comments_may_let_everyone_in():
    config, message = parse_config("prompt_comments: everyone\n")
    assert message is None and config.prompt_comments == "everyone"


def test_label_models_may_name_a_default_alias():
    config, message = parse_config("label_models: {Architecture: OPUS}\n")
    assert message is None
    assert config.label_models == {"Architecture": "opus"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # YAML syntax: the line and column.
        ("trigger_label: agent\nmodels: {opus: a\nmax_ci_rounds: 2\n", "is not valid YAML (line 3"),
        ("a: b: c\n", "is not valid YAML (line 1, column 5): mapping values are not allowed here"),
        ("\t- x\n", "is not valid YAML (line 1"),
        # YAML that is not a mapping.
        (
            "- trigger_label\n- agent\n",
            "must be a mapping of keys to values (like `trigger_label: agent`), but it is a list",
        ),
        ("just words\n", "but it is a single str value"),
        # PyYAML's unsafe tags are refused, not run.
        ("x: !!python/object/apply:os.system [echo hi]\n", "is not valid YAML (line 1"),
        # Unknown keys, with a suggestion.
        ("trigger_label: go\nmax_ci_round: 2\n", "`max_ci_round` (line 2): unknown key; did you mean `max_ci_rounds`?"),
        ("agent:\n  backend: codex\n  timout: 5\n", "`agent.timout` (line 3): unknown key; did you mean `timeout`?"),
        ("zzz: 1\n", "`zzz` (line 1): unknown key; the keys are trigger_label, models,"),
        # Values.
        ("max_ci_rounds: -1\n", "`max_ci_rounds` (line 1): Input should be greater than or equal to 0"),
        ("max_review_rounds: -2\n", "`max_review_rounds` (line 1): Input should be greater than or equal to 0"),
        ("agent: {timeout: 0}\n", "`agent.timeout` (line 1): Input should be greater than 0"),
        (
            "agent: {backend: gpt}\n",
            "`agent.backend` (line 1): Input should be 'claude-code', 'codex', 'aider' or 'command'",
        ),
        (
            "label_models: {architecture: gpt5}\n",
            "`label_models` (line 1): label 'architecture' points to unknown model alias 'gpt5' (known: opus, sonnet)",
        ),
        ("trigger_label: ''\n", "`trigger_label` (line 1): a label name must not be empty"),
        (f"trigger_label: {'x' * 51}\n", "`trigger_label` (line 1): a label name has at most 50 characters"),
        ("label_models: {'': opus}\n", "`label_models` (line 1): a label name must not be empty"),
        ("models: {opus: ''}\n", "`models` (line 1): the model id for 'opus' must be non-empty"),
        ("models: {'needs-human': x}\n", "`models` (line 1): model alias 'needs-human' is reserved"),
        ("models: {'two words': x}\n", "model alias 'two words' must be 1-40 letters"),
        ("forbidden_paths: ['!']\n", "`forbidden_paths` (line 1): '!' is not a valid path pattern"),
        ("setup_commands: ['  ']\n", "`setup_commands` (line 1): commands must not be empty strings"),
        # Wrong types.
        ("max_ci_rounds: many\n", "`max_ci_rounds` (line 1): Input should be a valid integer"),
        ("models: [opus, sonnet]\n", "`models` (line 1): Input should be a valid dictionary"),
        ("test_commands:\n  - pytest\n  - [nested]\n", "`test_commands.1` (line 3): Input should be a valid string"),
        ("agent: claude-code\n", "`agent` (line 1): Input should be a valid dictionary"),
        ("prompt: [a]\n", "`prompt` (line 1): Input should be a valid string"),
        ("prompt_comments: all\n", "`prompt_comments` (line 1): Input should be 'writers' or 'everyone'"),
        ("1: 2\n", "Keys should be strings"),
    ],
)
def test_an_invalid_file_is_the_defaults_and_a_message(text, expected):
    config, message = parse_config(text)
    assert config == RepoConfig()
    assert message is not None and expected in message, message


def test_every_problem_is_listed_up_to_a_limit():
    text = "".join(f"k{i}: 1\n" for i in range(8)) + "max_ci_rounds: -1\n"
    config, message = parse_config(text)
    assert config == RepoConfig()
    lines = message.splitlines()
    assert len(lines) == 6 and lines[-1] == "… and 4 more"


def test_a_bad_label_models_entry_is_not_reported_twice_when_models_is_bad():
    _, message = parse_config("models: [x]\nlabel_models: {a: opus}\n")
    assert message == "`models` (line 1): Input should be a valid dictionary"


def test_a_message_does_not_echo_the_values():
    _, message = parse_config("max_ci_rounds: 'secret-looking-value'\n")
    assert "secret-looking-value" not in message


def test_deep_nesting_does_not_raise():
    _, message = parse_config("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert message is not None


# -- loading from GitHub (the twin) ------------------------------------------


@pytest.fixture
async def gh(twin):
    iid = twin.add_installation(account="octo")
    twin.add_repo("octo/with", installation_id=iid, files={"README.md": "hi\n", CONFIG_PATH: FULL})
    twin.add_repo("octo/without", installation_id=iid, files={"README.md": "hi\n"})
    async with aiohttp.ClientSession() as session:
        yield gidgethub.aiohttp.GitHubAPI(
            session, "compound-tests", oauth_token=twin.mint_token(iid), base_url=twin.api_url
        )
    assert twin.violations == []


async def test_load_reads_the_default_branch(twin, gh):
    twin.commit("octo/with", "feature", {CONFIG_PATH: "max_ci_rounds: 9\n"}, "other config")
    config, message = await load_repo_config(gh, "octo", "with")
    assert message is None
    assert config == parse_config(FULL)[0]
    [call] = twin.calls("repos/get-content")
    assert call.path == f"/repos/octo/with/contents/{CONFIG_PATH}"


async def test_load_reads_another_ref(twin, gh):
    twin.commit("octo/with", "feature", {CONFIG_PATH: "max_ci_rounds: 9\n"}, "other config")
    config, message = await load_repo_config(gh, "octo", "with", ref="feature")
    assert message is None
    assert config.max_ci_rounds == 9
    assert config.setup_commands == []


async def test_no_file_is_the_defaults(gh):
    assert await load_repo_config(gh, "octo", "without") == (RepoConfig(), None)


async def test_load_reports_an_invalid_file(twin, gh):
    twin.commit("octo/without", "main", {CONFIG_PATH: "max_ci_rounds: -1\n"}, "bad config")
    config, message = await load_repo_config(gh, "octo", "without")
    assert config == RepoConfig()
    assert message == "`max_ci_rounds` (line 1): Input should be greater than or equal to 0"


async def test_a_file_that_is_not_utf8_is_reported(twin, gh):
    twin.commit("octo/without", "main", {CONFIG_PATH: b"prompt: \xff\xfe\n"}, "binary")
    config, message = await load_repo_config(gh, "octo", "without")
    assert config == RepoConfig()
    assert message == f"`{CONFIG_PATH}` is not UTF-8 text."


async def test_a_directory_in_its_place_is_reported(twin, gh):
    twin.commit("octo/without", "main", {f"{CONFIG_PATH}/x": "a\n"}, "a directory")
    config, message = await load_repo_config(gh, "octo", "without")
    assert config == RepoConfig()
    assert message == f"`{CONFIG_PATH}` is not a file."


async def test_other_errors_propagate(twin, gh):
    twin.fail_next("GET", r"/contents/", status=500, times=1)
    with pytest.raises(gidgethub.GitHubException):
        await load_repo_config(gh, "octo", "with")


# -- using the config --------------------------------------------------------

CONFIG = parse_config(FULL)[0]


@pytest.mark.parametrize(
    ("labels", "alias", "expected"),
    [
        ([], None, "default-model"),
        (["bug"], None, "default-model"),
        (["architecture"], None, "claude-opus-4-6"),
        (["ARCHITECTURE"], None, "claude-opus-4-6"),
        (["bug", "chore", "architecture"], None, "claude-haiku-4-5"),  # the first mapped label
        (["architecture", "agent:sonnet"], None, "claude-sonnet-4-5"),  # agent:<alias> beats label_models
        (["agent:Fast"], None, "claude-haiku-4-5"),
        (["agent", "agent:needs-human", "architecture"], None, "claude-opus-4-6"),  # reserved, not an alias
        (["agent:sonnet", "architecture"], "fast", "claude-haiku-4-5"),  # explicit alias beats all
        ([], "OPUS", "claude-opus-4-6"),
    ],
)
def test_resolve_model_precedence(labels, alias, expected):
    assert resolve_model(CONFIG, "default-model", labels, alias) == expected


def test_resolve_model_without_a_default_lets_the_backend_choose():
    assert resolve_model(RepoConfig(), None, ["bug"]) is None


def test_a_custom_trigger_label_also_names_models():
    config, _ = parse_config("trigger_label: robot\n")
    assert resolve_model(config, None, ["robot:sonnet"]) == "claude-sonnet-4-5"
    assert resolve_model(config, None, ["agent:opus"]) == "claude-opus-4-6"


@pytest.mark.parametrize(("labels", "alias"), [([], "gpt5"), (["agent:gpt5"], None), ([], "claude-opus-4-6")])
def test_an_unknown_alias_is_an_error_listing_the_known_ones(labels, alias):
    with pytest.raises(UnknownModelAlias) as caught:
        resolve_model(CONFIG, "default-model", labels, alias)
    assert caught.value.known == ["fast", "opus", "sonnet"]
    assert "known aliases: fast, opus, sonnet" in str(caught.value)


@pytest.mark.parametrize(
    ("path", "patterns", "forbidden"),
    [
        ("secrets/a/b.txt", ["secrets/**"], True),
        ("secrets/key", ["secrets/**"], True),
        ("secrets", ["secrets/**"], False),
        ("not-secrets/a", ["secrets/**"], False),
        ("lib/secrets/a", ["secrets/**"], False),  # a pattern with a slash is anchored
        ("lib/secrets/a", ["secrets/"], True),  # a bare directory name is not
        (".github/workflows/ci.yml", [".github/workflows/**"], True),
        (".github/dependabot.yml", [".github/workflows/**"], False),
        ("keys/x.pem", ["*.pem"], True),
        ("x.pem", ["*.pem"], True),
        ("x.pem.txt", ["*.pem"], False),
        ("top.txt", ["/top.txt"], True),
        ("sub/top.txt", ["/top.txt"], False),
        ("a/b/c/d.lock", ["a/**/*.lock"], True),
        ("./secrets/a", ["secrets/**"], True),
        ("/secrets/a", ["secrets/**"], True),
        ("secrets/public/a", ["secrets/**", "!secrets/public/**"], False),
        ("anything", [], False),
        ("", ["*"], False),
    ],
)
def test_is_forbidden(path, patterns, forbidden):
    assert is_forbidden(path, patterns) is forbidden


def test_effective_rounds_and_timeout():
    s = settings(MAX_CI_ROUNDS=5, MAX_REVIEW_ROUNDS=4, AGENT_TIMEOUT=600)
    assert effective_rounds(RepoConfig(), s) == (5, 4)
    assert effective_rounds(CONFIG, s) == (2, 0)
    assert effective_timeout(RepoConfig(), s) == 600
    assert effective_timeout(parse_config("agent: {timeout: 60}")[0], s) == 60
    # A repo may shorten the operator's limit, not extend it.
    assert effective_timeout(parse_config("agent: {timeout: 99999}")[0], s) == 600


def test_allowed_bots():
    config, _ = parse_config('allowed_bots: ["dependabot[bot]", Renovate]\n')
    assert config.allows_bot("dependabot[bot]")
    assert config.allows_bot("renovate[bot]")
    assert not config.allows_bot("compound[bot]")
    assert not RepoConfig().allows_bot("dependabot[bot]")
