"""Settings from the environment: each mistake is named by its variable."""

from __future__ import annotations

import httpx
import pytest

from worker.sendcloud.client import SendCloudClient
from worker.settings import CREDENTIAL_VARIABLES, ConfigurationError, Settings

FULL = {
    "SENDCLOUD_SMS_USER": "sms_user",
    "SENDCLOUD_SMS_KEY": "sms-key-value",
    "SENDCLOUD_API_USER": "api_user",
    "SENDCLOUD_API_KEY": "api-key-value",
}


def test_a_full_environment_is_read() -> None:
    env = {
        **FULL,
        "SENDCLOUD_BASE_URL": "http://127.0.0.1:8080/",
        "SENDCLOUD_SIGN_METHOD": " SHA256 ",
        "SENDCLOUD_CONNECT_TIMEOUT": "2.5",
        "SENDCLOUD_READ_TIMEOUT": "9",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "debug",
    }
    settings = Settings.from_env(env).require_credentials()
    assert settings.base_url == "http://127.0.0.1:8080"
    assert settings.sign_method == "sha256"
    assert (settings.connect_timeout, settings.read_timeout) == (2.5, 9.0)
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")
    assert settings.secrets == ("sms-key-value", "api-key-value")


def test_from_env_alone_needs_no_credentials() -> None:
    settings = Settings.from_env({})
    assert settings.sign_method == "md5" and settings.secrets == ()


@pytest.mark.parametrize("missing", CREDENTIAL_VARIABLES)
@pytest.mark.parametrize("blank", [None, "", "   "])
def test_a_missing_credential_is_named(missing: str, blank: str | None) -> None:
    env = {k: v for k, v in FULL.items() if k != missing}
    if blank is not None:
        env[missing] = blank
    settings = Settings.from_env(env)
    with pytest.raises(ConfigurationError) as info:
        settings.require_credentials()
    assert info.value.variable == missing
    assert missing in str(info.value)



@pytest.mark.parametrize("missing", CREDENTIAL_VARIABLES)
def test_the_client_names_a_missing_credential_before_sending(missing: str) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"statusCode": 200, "info": {"count": 1}})

    settings = Settings.from_env({k: v for k, v in FULL.items() if k != missing})
    with SendCloudClient(settings, transport=httpx.MockTransport(handler)) as client:
        calls = {
            "sms": lambda: client.send_voice("13800000001", "1234"),
            "api": lambda: client.delete_address_list("l@m.org"),
        }
        family = "sms" if "SMS" in missing else "api"
        needs, works = calls.pop(family), calls.popitem()[1]
        with pytest.raises(ConfigurationError) as info:
            needs()
        assert info.value.variable == missing
        assert requests == []
        works()  # the other API family needs none of the missing variable
    assert len(requests) == 1


@pytest.mark.parametrize("value", ["sha1", "hmac", "md-5"])
def test_a_bad_sign_method_is_named(value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({**FULL, "SENDCLOUD_SIGN_METHOD": value})
    assert info.value.variable == "SENDCLOUD_SIGN_METHOD"
    assert "md5" in info.value.rule and "sha256" in info.value.rule


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SENDCLOUD_CONNECT_TIMEOUT", "soon"),
        ("SENDCLOUD_READ_TIMEOUT", "0"),
        ("SENDCLOUD_IDEMPOTENCY_TTL", "60"),
        ("SENDCLOUD_POLL_RATE_PER_MINUTE", "1.5"),
        ("LOG_FORMAT", "xml"),
        ("SENDCLOUD_DAILY_LIMIT_ACTION", "ignore"),
        ("SENDCLOUD_REQUEST_ID_NAMESPACE", "has:colon"),
        ("SENDCLOUD_REQUEST_ID_NAMESPACE", "n" * 33),
        ("SENDCLOUD_SMS_HOOK_KEY", "two words"),
        ("SENDCLOUD_MAIL_HOOK_KEY", "tab\tinside"),
        ("SENDCLOUD_HOOK_MAX_BYTES", "512"),
        ("SENDCLOUD_HOOK_MAX_BYTES", "64k"),
        ("SENDCLOUD_HOOK_WINDOW", "0"),
    ],
)
def test_other_bad_values_are_named(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({**FULL, variable: value})
    assert info.value.variable == variable


def test_secrets_stay_out_of_repr_and_errors() -> None:
    settings = Settings.from_env(FULL)
    assert "sms-key-value" not in repr(settings) and "api-key-value" not in repr(settings)
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({**FULL, "SENDCLOUD_SIGN_METHOD": "sms-key-value"})
    assert "sms-key-value" not in str(info.value)


def test_the_request_id_namespace_is_read() -> None:
    assert Settings.from_env(FULL).request_id_namespace == ""
    settings = Settings.from_env({**FULL, "SENDCLOUD_REQUEST_ID_NAMESPACE": "shop-a.prod"})
    assert settings.request_id_namespace == "shop-a.prod"


def test_the_hook_settings_are_read_and_their_keys_are_secrets() -> None:
    defaults = Settings.from_env(FULL)
    assert (defaults.sms_hook_key, defaults.mail_hook_key) == ("", "")
    assert (defaults.hook_max_bytes, defaults.hook_window) == (1 << 20, 3600)
    settings = Settings.from_env({
        **FULL, "SENDCLOUD_SMS_HOOK_KEY": " sms-app-key ",
        "SENDCLOUD_MAIL_HOOK_KEY": "mail-app-key", "SENDCLOUD_HOOK_MAX_BYTES": "4096",
        "SENDCLOUD_HOOK_WINDOW": "600",
    })  # fmt: skip
    assert (settings.sms_hook_key, settings.mail_hook_key) == ("sms-app-key", "mail-app-key")
    assert (settings.hook_max_bytes, settings.hook_window) == (4096, 600)
    assert {"sms-app-key", "mail-app-key"} <= set(settings.secrets)
    assert "app-key" not in repr(settings)
    assert settings.require_hook_key() is settings


def test_the_receiver_needs_a_hook_key_and_not_an_api_key() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(FULL).require_hook_key()
    assert info.value.variable == "SENDCLOUD_SMS_HOOK_KEY"
    assert "SENDCLOUD_MAIL_HOOK_KEY" in info.value.rule
    assert Settings.from_env({"SENDCLOUD_MAIL_HOOK_KEY": "k"}).require_hook_key()
    for variable, credential in (("SENDCLOUD_SMS_HOOK_KEY", "SENDCLOUD_SMS_KEY"),
                                 ("SENDCLOUD_MAIL_HOOK_KEY", "SENDCLOUD_API_KEY")):
        with pytest.raises(ConfigurationError) as info:
            Settings.from_env({**FULL, variable: FULL[credential]}).require_hook_key()
        assert info.value.variable == variable
        assert FULL[credential] not in str(info.value)


def test_the_redis_password_is_a_secret_and_out_of_the_target_repr() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://:data-pass-1@10.0.0.5:6379/2"})
    assert "data-pass-1" in settings.secrets
    assert "data-pass-1" not in repr(settings.redis_target) + repr(settings)
