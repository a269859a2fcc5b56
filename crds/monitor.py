"""Monitor: a Runscope-style API test (steps and environments), run on schedules or on trigger.

Field names follow the Runscope test, step and environment documents (snake_case there,
camelCase here), so that the Runscope gateway maps them one to one.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, StringConstraints

from .common import (
    AssayModel,
    Assertions,
    Comparison,
    Conditions,
    HttpMethod,
    Resource,
    Rule,
    SecretRef,
    SecretSource,
    SecretVariables,
    StatusModel,
    Url,
    Variables,
    has_secret,
    secret_rule,
)
from .runs import Run
from .schema import CrdKind, PrinterColumn

MAX_STEPS = 100
MAX_CONDITION_STEPS = 50
MAX_ENVIRONMENTS = 20
MAX_HISTORY = 20

Header = dict[str, list[str]]
"""Header (or form field) name to its values, in order."""

# --- authentication ---------------------------------------------------------------------------


class BasicAuth(AssayModel):
    """HTTP basic authentication."""

    auth_type: Literal["basic"]
    username: str
    password: Optional[str] = None
    password_from: Optional[SecretSource] = None

    validation_rules = (secret_rule("password"),)


class OAuth1Auth(AssayModel):
    """OAuth 1.0a request signing."""

    auth_type: Literal["oauth_1"]
    consumer_key: str
    consumer_secret: Optional[str] = None
    consumer_secret_from: Optional[SecretSource] = None
    access_token: Optional[str] = None
    token_secret: Optional[str] = None
    token_secret_from: Optional[SecretSource] = None
    signature_type: Literal["auth_header", "query", "body"] = "auth_header"

    validation_rules = (
        Rule(
            cel="has(self.consumerSecret) || has(self.consumerSecretFrom)",
            check=lambda a: has_secret(a, "consumer_secret"),
            message="oauth_1 needs consumerSecret or consumerSecretFrom",
            field_path=".consumerSecret",
            reason="FieldValueRequired",
        ),
        secret_rule("consumer_secret"),
        secret_rule("token_secret"),
    )


OAUTH2_REDIRECT_GRANTS = ("authorization_code", "authorization_code_pkce", "implicit")


class OAuth2Auth(AssayModel):
    """OAuth 2.0: a fixed access token, or a grant that obtains one."""

    auth_type: Literal["oauth_2"]
    access_token: Optional[str] = None
    access_token_from: Optional[SecretSource] = None
    token_location: Optional[Literal["query", "auth_header"]] = None
    grant_type: Optional[
        Literal[
            "authorization_code", "authorization_code_pkce", "implicit", "password_credentials", "client_credentials"
        ]
    ] = None
    auth_url: Optional[str] = None
    """Third-party authorization URL (authorization code and implicit grants)."""
    access_token_url: Optional[str] = None
    client_id: Optional[str] = None
    client_secret: Optional[str] = None
    client_secret_from: Optional[SecretSource] = None
    code_challenge_method: Optional[Literal["plain", "S256"]] = None
    code_verifier: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = None
    password_from: Optional[SecretSource] = None
    scope: Optional[str] = None
    state: Optional[str] = None
    client_authentication: Optional[Literal["basic_auth_header", "body"]] = None
    refresh_token: Optional[str] = None
    refresh_token_from: Optional[SecretSource] = None
    is_auto_refresh_token: Optional[bool] = None

    validation_rules = (
        Rule(
            cel="has(self.accessToken) || has(self.accessTokenFrom) || has(self.grantType)",
            check=lambda a: has_secret(a, "access_token") or a.grant_type is not None,
            message="oauth_2 needs accessToken or grantType",
            field_path=".accessToken",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="!has(self.grantType) || has(self.clientId)",
            check=lambda a: a.grant_type is None or a.client_id is not None,
            message="clientId is required with grantType",
            field_path=".clientId",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="!has(self.grantType) || self.grantType == 'implicit' || has(self.accessTokenUrl)",
            check=lambda a: a.grant_type in (None, "implicit") or a.access_token_url is not None,
            message="accessTokenUrl is required for this grantType",
            field_path=".accessTokenUrl",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="!has(self.grantType)"
            " || !(self.grantType in ['authorization_code', 'authorization_code_pkce', 'implicit'])"
            " || has(self.authUrl)",
            check=lambda a: a.grant_type not in OAUTH2_REDIRECT_GRANTS or a.auth_url is not None,
            message="authUrl is required for authorization code and implicit grants",
            field_path=".authUrl",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="!has(self.grantType) || self.grantType != 'password_credentials'"
            " || (has(self.username) && (has(self.password) || has(self.passwordFrom)))",
            check=lambda a: (
                a.grant_type != "password_credentials" or (a.username is not None and has_secret(a, "password"))
            ),
            message="username and password are required for password_credentials",
            field_path=".username",
            reason="FieldValueRequired",
        ),
        secret_rule("access_token"),
        secret_rule("client_secret"),
        secret_rule("password"),
        secret_rule("refresh_token"),
    )


class ClientCertificateAuth(AssayModel):
    """TLS client authentication with the environment's clientCertificate."""

    auth_type: Literal["client_certificate"]


Auth = Annotated[
    Union[BasicAuth, OAuth1Auth, OAuth2Auth, ClientCertificateAuth],
    Field(discriminator="auth_type", description="Credentials for the request; authType selects which fields apply."),
]

# --- steps ------------------------------------------------------------------------------------


class _StepFields(AssayModel):
    id: Optional[Annotated[str, StringConstraints(max_length=64)]] = None
    """Stable step id, as the Runscope API reports it."""
    skipped: bool = False
    """A skipped step is kept but not run."""
    note: str = ""


class RequestStep(_StepFields):
    """An HTTP request with assertions and variable extraction."""

    step_type: Literal["request"]
    method: HttpMethod = "GET"
    url: Url
    """May contain query parameters and `{{variables}}`."""
    body: Optional[str] = None
    form: Header = {}
    headers: Header = {}
    auth: Optional[Auth] = None
    assertions: Assertions = []
    variables: Variables = []
    scripts: list[str] = []
    """Scripts run after the response arrives."""
    before_scripts: list[str] = []
    """Scripts run before the request is sent."""


class PauseStep(_StepFields):
    """Wait before the next step."""

    step_type: Literal["pause"]
    duration: int = Field(ge=1, le=120)
    """Seconds to pause, 1 to 120."""


class SubtestParam(AssayModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    value: str = ""


class SubtestStep(_StepFields):
    """Run another test (a Monitor) and wait for its result."""

    step_type: Literal["subtest"]
    test_uuid: Optional[Annotated[str, StringConstraints(max_length=64)]] = None
    """The other test's id as the Runscope API knows it."""
    monitor: Optional[Annotated[str, StringConstraints(max_length=253)]] = None
    """The other test by Monitor name, in this namespace."""
    environment_uuid: Optional[Annotated[str, StringConstraints(max_length=64)]] = None
    bucket_key: Optional[Annotated[str, StringConstraints(max_length=64)]] = None
    params: Annotated[list[SubtestParam], Field(max_length=50)] = []
    """Variables passed to the subtest at run time."""
    assertions: Assertions = []
    variables: Variables = []

    validation_rules = (
        Rule(
            cel="has(self.testUuid) || has(self.monitor)",
            check=lambda s: s.test_uuid is not None or s.monitor is not None,
            message="a subtest needs testUuid or monitor",
            field_path=".monitor",
            reason="FieldValueRequired",
        ),
    )


class GhostInspectorStep(_StepFields):
    """Run a Ghost Inspector UI test and wait for its webhook result."""

    step_type: Literal["ghost-inspector"]
    integration_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    """The team's Ghost Inspector integration."""
    suite_id: Optional[Annotated[str, StringConstraints(max_length=64)]] = None
    test_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    is_custom_start_url: bool = False
    start_url: Optional[Url] = None
    assertions: Assertions = []
    variables: Variables = []

    validation_rules = (
        Rule(
            # has() first: the flattened step schema cannot default isCustomStartUrl, which
            # belongs to one step type only.
            cel="!(has(self.isCustomStartUrl) && self.isCustomStartUrl) || has(self.startUrl)",
            check=lambda s: not s.is_custom_start_url or s.start_url is not None,
            message="startUrl is required when isCustomStartUrl is true",
            field_path=".startUrl",
            reason="FieldValueRequired",
        ),
    )


InnerStep = Annotated[
    Union[RequestStep, PauseStep, SubtestStep, GhostInspectorStep],
    Field(discriminator="step_type"),
]
"""A step inside a condition. Conditions do not nest: a structural schema cannot recurse."""


class ConditionStep(_StepFields):
    """Run the embedded steps only when `leftValue comparison rightValue` holds."""

    step_type: Literal["condition"]
    left_value: str
    comparison: Comparison
    right_value: Optional[str] = None
    steps: Annotated[list[InnerStep], Field(max_length=MAX_CONDITION_STEPS)] = []


Step = Annotated[
    Union[RequestStep, PauseStep, ConditionStep, SubtestStep, GhostInspectorStep],
    Field(discriminator="step_type"),
]

# --- environments -----------------------------------------------------------------------------


class RemoteAgent(AssayModel):
    name: str
    uuid: Annotated[str, StringConstraints(max_length=64)]


class Recipient(AssayModel):
    email: str
    name: Optional[str] = None
    id: Optional[str] = None


DEFAULT_NOTIFY_THRESHOLD = 1
"""The failures in a row that threshold and switch wait for when notifyThreshold is unset."""


class Emails(AssayModel):
    """Email notifications after runs."""

    notify_all: bool = False
    """Notify every team member, not only the recipients."""
    notify_on: Literal["all", "failures", "threshold", "switch"] = "all"
    """all: every run; failures: every failed run; threshold: after notifyThreshold failures;
    switch: after notifyThreshold failures and once more when it passes again."""
    notify_threshold: Optional[int] = Field(default=None, ge=1, le=10)
    recipients: Annotated[list[Recipient], Field(max_length=100)] = []

    validation_rules = (
        Rule(
            cel="!(self.notifyOn in ['threshold', 'switch']) || has(self.notifyThreshold)",
            check=lambda e: e.notify_on not in ("threshold", "switch") or e.notify_threshold is not None,
            message="notifyThreshold is required when notifyOn is threshold or switch",
            field_path=".notifyThreshold",
            reason="FieldValueRequired",
        ),
    )


NOTIFYING_INTEGRATIONS = ("slack", "microsoft_teams", "pagerduty", "webhook")
"""The integration types the operator sends each finished run to (operator/integrations.py)."""


class Integration(AssayModel):
    """A third-party service notified of runs, as Runscope's environments name them. The
    operator sends every finished run to a `slack` or `microsoft_teams` incoming webhook
    (`url`), a `webhook` (`url`, the body environment webhooks get) and `pagerduty` (Events
    API v2 with `routingKey`: a failed run triggers an alert, a passed one resolves it; `url`
    only to use another Events API endpoint). Other types are listed, not sent to."""

    id: str
    integration_type: Optional[str] = None
    description: Optional[str] = None
    url: Optional[Annotated[str, StringConstraints(max_length=2048)]] = None
    """The incoming-webhook URL; a secret, since such URLs carry their token."""
    url_from: Optional[SecretSource] = None
    routing_key: Optional[Annotated[str, StringConstraints(max_length=128)]] = None
    """PagerDuty's integration (routing) key."""
    routing_key_from: Optional[SecretSource] = None

    validation_rules = (secret_rule("url"), secret_rule("routing_key"))


class Environment(AssayModel):
    """Settings a run uses: variables, where it runs, retries and notifications."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    id: Optional[Annotated[str, StringConstraints(max_length=64)]] = None
    """Stable environment id, as the Runscope API reports it."""
    parent_environment_id: Optional[Annotated[str, StringConstraints(max_length=64)]] = None
    """A shared environment this one inherits from."""
    initial_variables: dict[str, str] = {}
    secret_variables: SecretVariables = []
    """Variables whose values are secrets, inline or from Secrets; they are set after
    initialVariables and win over them."""
    regions: Annotated[list[str], Field(max_length=20)] = []
    """Regions the runs execute in (mapped to node selectors)."""
    remote_agents: Annotated[list[RemoteAgent], Field(max_length=20)] = []
    verify_ssl: bool = True
    preserve_cookies: bool = False
    """Keep cookies between the steps of a run."""
    http_version_support: Optional[Annotated[str, StringConstraints(max_length=32)]] = None
    """Runscope's HTTP version setting, kept as written for API clients; runs do not read it."""
    force_h2c: bool = False
    """Runscope's cleartext HTTP/2 setting, kept as written for API clients; runs do not read it."""
    retry_on_failure: bool = False
    """Run once more right after a failed scheduled run."""
    stop_on_failure: bool = False
    """Skip the remaining steps after the first failing one."""
    script: str = ""
    """Script run before the first step."""
    script_library: list[str] = []
    """Ids of script libraries loaded before the script."""
    client_certificate: Optional[str] = None
    """PEM client certificate and key for client_certificate authentication."""
    client_certificate_from: Optional[SecretSource] = None
    headers: Header = {}
    """Headers added to every request."""
    auth: Optional[Auth] = None
    webhooks: list[str] = []
    """URLs that receive the result of each run."""
    emails: Optional[Emails] = None
    integrations: Annotated[list[Integration], Field(max_length=20)] = []

    validation_rules = (secret_rule("client_certificate"),)


SHARED_ENVIRONMENTS_CONFIGMAP = "assay-shared-environments"
"""The ConfigMap of a namespace holding its shared environments: key = environment id, value =
the Environment as JSON (camelCase). An environment's parentEnvironmentId names one of them."""
_MERGED_FIELDS = ("initialVariables", "headers")


def inherit_environment(env: dict, parent: Optional[dict]) -> dict:
    """`env` (camelCase, as stored) over its shared parent: variables and headers merged with the
    environment's own winning; any other setting the environment leaves empty comes from the
    parent. Name, id and parentEnvironmentId stay the environment's."""
    if not parent:
        return env
    merged = {k: v for k, v in parent.items() if k not in ("name", "id", "parentEnvironmentId")}
    for key, value in env.items():
        if key in _MERGED_FIELDS and isinstance(value, dict):
            merged[key] = {**(parent.get(key) or {}), **value}
        elif value not in (None, "", [], {}) or key not in merged:
            merged[key] = value
    return merged


class Trigger(AssayModel):
    enabled: bool = True
    """Whether the trigger URL starts runs."""


class MonitorSpec(AssayModel):
    """The steps of the test and the environments it runs in."""

    display_name: Optional[Annotated[str, StringConstraints(max_length=256)]] = None
    """Free-text name shown by the Runscope API; metadata.name when unset."""
    description: str = ""
    steps: Annotated[list[Step], Field(max_length=MAX_STEPS)] = []
    environments: Annotated[list[Environment], Field(max_length=MAX_ENVIRONMENTS)] = []
    default_environment: Optional[Annotated[str, StringConstraints(max_length=128)]] = None
    """Name of the environment used when a run names none."""
    trigger: Trigger = Trigger()

    validation_rules = (
        Rule(
            cel="!has(self.environments)"
            " || self.environments.all(e, self.environments.exists_one(f, f.name == e.name))",
            check=lambda s: len({e.name for e in s.environments}) == len(s.environments),
            message="environment names must be unique",
            field_path=".environments",
        ),
        Rule(
            cel="!has(self.defaultEnvironment)"
            " || (has(self.environments) && self.environments.exists(e, e.name == self.defaultEnvironment))",
            check=lambda s: s.default_environment is None or s.default_environment in {e.name for e in s.environments},
            message="defaultEnvironment must name one of spec.environments",
            field_path=".defaultEnvironment",
        ),
    )

    def environment(self, name: Optional[str] = None) -> Optional[Environment]:
        """The named environment, else the default one, else the first; None if there are none."""
        wanted = name or self.default_environment
        for env in self.environments:
            if env.name == wanted:
                return env
        if name is not None:
            return None
        return self.environments[0] if self.environments else None


class MonitorRun(Run):
    """A Monitor run; its `counts` are assertions, summed over its regions."""

    environment: Optional[str] = None
    regions: list[str] = []
    response_time_ms: Optional[int] = None
    """Mean response time of the run's requests, in milliseconds."""
    schedule: Optional[str] = None
    """The Schedule that started the run; unset for a requested run."""


RUNSCOPE_RESULTS = {"Passed": "pass", "Failed": "fail", "Aborted": "fail"}


def runscope_result(run: dict) -> str:
    """A run record's (camelCase dict) result as Runscope spells it: pass, fail, or working
    while it has not finished. For the REST mappers and the webhook payloads only."""
    return RUNSCOPE_RESULTS.get(run.get("result") or "", "working")


class MonitorStatus(StatusModel):
    last_run: Optional[MonitorRun] = None
    history: Annotated[list[MonitorRun], Field(max_length=MAX_HISTORY)] = []
    """The most recent runs, newest first; the result store keeps all of them."""
    trigger_secret_ref: Optional[SecretRef] = None
    """The Secret holding the trigger token; the token itself never appears in status."""
    observed_generation: Optional[int] = None
    conditions: Conditions = []
    notified_runs: Annotated[list[str], Field(max_length=MAX_HISTORY)] = []
    """Runs whose webhooks and e-mails have been sent (claimed before sending), newest last;
    the operator sends nothing for a run listed here."""


class Monitor(Resource):
    """Monitor is an API test in the style of Runscope: request, pause, condition, subtest and
    Ghost Inspector steps, and environments with initial variables, regions, retries and
    notifications. It runs on Schedules or when its trigger is called."""

    kind: Literal["Monitor"] = "Monitor"
    spec: MonitorSpec
    status: MonitorStatus = MonitorStatus()


CRD = CrdKind(
    resource=Monitor,
    spec=MonitorSpec,
    status=MonitorStatus,
    plural="monitors",
    singular="monitor",
    short_names=("mon",),
    printer_columns=(
        PrinterColumn("Phase", "string", ".status.lastRun.phase"),
        PrinterColumn("Result", "string", ".status.lastRun.result"),
        PrinterColumn("Last Run", "date", ".status.lastRun.startTime"),
    ),
)
