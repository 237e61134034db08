"""The SendCloud HTTP client: one method per endpoint, typed results, typed errors.

Every reply is read the same way (``statusCode``, ``result``, ``message``, ``info``): success
codes become the endpoint's result type, every other code becomes the exception
``codes.error_for`` picks. No retries happen here except the one 461 re-sync; short retries of
transient errors are ``worker.sendcloud.retries``' job, longer ones the job layer's.

Nothing secret leaves this module. Errors are built from SendCloud's reply text (with the
configured secrets masked) and the endpoint path; they are raised outside the ``except`` block
that caught an httpx error, so neither ``__cause__`` nor ``__context__`` carries httpx's text,
which can include the URL or the request.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from types import TracebackType
from typing import Any, TypeVar

import httpx
import structlog

from worker import metrics
from worker.sendcloud import codes, errors, models, signing
from worker.sendcloud.models import (
    AddressList,
    EmailStatusPage,
    Member,
    MemberOpResult,
    Page,
    SmsResult,
)
from worker.settings import ConfigurationError, Settings

log = structlog.get_logger("worker.sendcloud.client")

SMS_SEND = "/smsapi/send"
SMS_SEND_CODE = "/smsapi/sendCode"
SMS_SEND_VOICE = "/smsapi/sendVoice"
SMS_TIMESTAMP = "/smsapi/timestamp/get"
EMAIL_STATUS = "/apiv2/data/emailStatus"
LIST_LIST = "/apiv2/addresslist/list"
LIST_ADD = "/apiv2/addresslist/add"
LIST_DELETE = "/apiv2/addresslist/delete"
LIST_UPDATE = "/apiv2/addresslist/update"
MEMBER_LIST = "/apiv2/addressmember/list"
MEMBER_GET = "/apiv2/addressmember/get"
MEMBER_ADD = "/apiv2/addressmember/add"
MEMBER_UPDATE = "/apiv2/addressmember/update"
MEMBER_DELETE = "/apiv2/addressmember/delete"

CLOCK_SKEW_CODE = 461
MASK = "***"

Info = Mapping[str, Any]
T = TypeVar("T")


def compact_json(value: Mapping[str, Any]) -> str:
    """JSON as SendCloud's examples write it: no spaces, non-ASCII kept as is."""
    return json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"))


def _join(values: Sequence[str], sep: str, field: str) -> str:
    """Join a list parameter, refusing items that would split into extra items."""
    if isinstance(values, str):
        raise TypeError(f"{field}: must be a sequence of strings, not a single string")
    for i, value in enumerate(values):
        if sep in value:
            raise ValueError(f"{field}[{i}]: must not contain {sep!r}, the list separator")
    return sep.join(values)


def _same_length(field: str, values: Sequence[Any] | None, members: Sequence[str]) -> None:
    if values is not None and len(values) != len(members):
        raise ValueError(f"{field}: must have one entry per member ({len(members)})")


GET_HEADERS = {"Accept": "application/json", "User-Agent": "sendcloud-jobs"}
POST_HEADERS = {**GET_HEADERS, "Content-Type": "application/x-www-form-urlencoded"}
_PLAIN = re.compile(r"[A-Za-z0-9_.~,-]*")


def _form_quoted(text: str) -> str:
    return text.replace(",", "%2C") if _PLAIN.fullmatch(text) else urllib.parse.quote_plus(text)


def form_body(params: Mapping[str, str]) -> bytes:
    """``application/x-www-form-urlencoded``, as ``urlencode`` makes it. A name or value of
    plain characters and commas (2000 phones) skips ``quote_plus``, which looks up every
    character in a dict: a tenth of a worker's CPU per campaign chunk."""
    return "&".join(f"{_form_quoted(str(name))}={_form_quoted(str(value))}"
                    for name, value in params.items()).encode("ascii")  # fmt: skip


class SendCloudClient:
    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        #: Settings are frozen; the property parses two URLs on every read.
        self._secrets = settings.secrets
        self._clock = clock
        #: Server time minus local time, in ms; learnt from timestamp/get after a 461.
        self._offset_ms = 0.0
        # Requests go straight to the transport: httpx.Client's request building, redirect,
        # auth and cookie layers were about 40 % of the CPU of a call (py-spy), and a SendCloud
        # call uses none of them (no redirects, no cookies, credentials in the signed form).
        self._transport = transport if transport is not None else _transport_for(settings)
        self._base_url = settings.base_url.rstrip("/")
        self._timeout = httpx.Timeout(
            settings.read_timeout, connect=settings.connect_timeout
        ).as_dict()
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True
        self._transport.close()

    def __enter__(self) -> SendCloudClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- SMS -------------------------------------------------------------------------------

    def send_sms(
        self,
        template_id: int,
        phones: Sequence[str],
        vars: Mapping[str, str] | None = None,
        *,
        msg_type: int = 0,
        send_request_id: str | None = None,
        tag: Mapping[str, str] | None = None,
    ) -> SmsResult:
        params = {
            "templateId": str(template_id),
            "msgType": str(msg_type),
            "phone": _join(phones, ",", "phones"),
        }
        if vars is not None:
            params["vars"] = compact_json(vars)
        return self._sms(SMS_SEND, params, send_request_id, tag)

    def send_code(
        self,
        phone: str,
        code: str,
        *,
        msg_type: int = 0,
        sign_id: int | None = None,
        sign_name: str | None = None,
        send_request_id: str | None = None,
        tag: Mapping[str, str] | None = None,
    ) -> SmsResult:
        params = {"phone": phone, "code": code, "msgType": str(msg_type)}
        # SendCloud ignores signName when signId is present; sending one keeps it unambiguous.
        if sign_id is not None:
            params["signId"] = str(sign_id)
        elif sign_name is not None:
            params["signName"] = sign_name
        return self._sms(SMS_SEND_CODE, params, send_request_id, tag)

    def send_voice(
        self,
        phone: str,
        code: str,
        *,
        send_request_id: str | None = None,
        tag: Mapping[str, str] | None = None,
    ) -> SmsResult:
        return self._sms(SMS_SEND_VOICE, {"phone": phone, "code": code}, send_request_id, tag)

    def server_timestamp(self) -> int:
        """SendCloud's clock in ms (GET smsapi/timestamp/get, which takes no parameters)."""
        code, _, info = self._call("GET", SMS_TIMESTAMP, {})
        return self._parsed(SMS_TIMESTAMP, code, lambda: models.parse_timestamp(info))

    def _sms(
        self,
        endpoint: str,
        params: dict[str, str],
        send_request_id: str | None,
        tag: Mapping[str, str] | None,
    ) -> SmsResult:
        if send_request_id is not None:
            params["sendRequestId"] = send_request_id
        if tag is not None:
            params["tag"] = compact_json(tag)
        reply: tuple[int, str, object] | None = None
        try:
            reply = self._call("POST", endpoint, self._signed(params))
        except errors.ClockSkewError as exc:
            if exc.code != CLOCK_SKEW_CODE:
                raise
        if reply is None:
            # Our clock (or the offset learnt earlier) is off: learn it again, then try once more.
            # Outside the except block, so a second 461 does not chain the first.
            self._resync()
            log.info("sendcloud.clock_resynced", endpoint=endpoint, offset_ms=self._offset_ms)
            reply = self._call("POST", endpoint, self._signed(params))
        code, message, info = reply
        return self._parsed(
            endpoint, code, lambda: SmsResult.parse(code, message, models.info_object(info))
        )

    def _signed(self, params: Mapping[str, str]) -> dict[str, str]:
        self._require("SENDCLOUD_SMS_USER", "SENDCLOUD_SMS_KEY")
        signed = dict(params)
        signed["smsUser"] = self._settings.sms_user
        signed["timestamp"] = str(int(self._clock() * 1000 + self._offset_ms))
        signed["signature"] = signing.sign(
            signed, self._settings.sms_key, self._settings.sign_method
        )
        return signed

    def _resync(self) -> None:
        before = self._clock() * 1000
        server_ms = self.server_timestamp()
        after = self._clock() * 1000
        # The server read its clock somewhere in between; the midpoint halves the error.
        self._offset_ms = server_ms - (before + after) / 2

    # -- mail: emailStatus -------------------------------------------------------------------

    def email_status(
        self,
        *,
        days: int | None = None,
        start_date: date | None = None,
        end_date: date | None = None,
        email: str | None = None,
        email_ids: Sequence[str] | None = None,
        label_id: str | None = None,
        label_name: str | None = None,
        api_user_list: Sequence[str] | None = None,
        status: int | None = None,
        sub_status: Sequence[str] | None = None,
        start: int = 0,
        limit: int = 100,
    ) -> EmailStatusPage:
        if days is None and (start_date is None or end_date is None):
            raise ValueError("days: required unless both start_date and end_date are given")
        optional: dict[str, str | None] = {
            "days": None if days is None else str(days),
            "startDate": None if start_date is None else start_date.isoformat(),
            "endDate": None if end_date is None else end_date.isoformat(),
            "email": email,
            "emailIds": None if email_ids is None else _join(email_ids, ";", "email_ids"),
            "labelId": label_id,
            "labelName": label_name,
            "apiUserList": (
                None if api_user_list is None else _join(api_user_list, ";", "api_user_list")
            ),
            "status": None if status is None else str(status),
            "subStatus": None if sub_status is None else _join(sub_status, ";", "sub_status"),
        }
        params = {k: v for k, v in optional.items() if v is not None}
        params.update(start=str(start), limit=str(limit))
        return self._api(EMAIL_STATUS, params, EmailStatusPage.parse)

    # -- mail: address lists -----------------------------------------------------------------

    def list_address_lists(
        self, addresses: Sequence[str] | None = None, *, start: int = 0, limit: int = 100
    ) -> Page[AddressList]:
        params = {"start": str(start), "limit": str(limit)}
        if addresses is not None:
            params["address"] = _join(addresses, ";", "addresses")
        return self._api(LIST_LIST, params, lambda info: Page.parse(info, AddressList.parse))

    def add_address_list(self, address: str, name: str, desc: str | None = None) -> AddressList:
        params = {"address": address, "name": name}
        if desc is not None:
            params["desc"] = desc
        return self._api(LIST_ADD, params, models.parse_data)

    def delete_address_list(self, address: str) -> int:
        return self._api(LIST_DELETE, {"address": address}, models.parse_count)

    def update_address_list(
        self,
        address: str,
        *,
        new_address: str | None = None,
        name: str | None = None,
        desc: str | None = None,
    ) -> int:
        if new_address is None and name is None and desc is None:
            raise ValueError("new_address, name, desc: at least one must be given")
        params = {"address": address}
        for key, value in (("newAddress", new_address), ("name", name), ("desc", desc)):
            if value is not None:
                params[key] = value
        return self._api(LIST_UPDATE, params, models.parse_count)

    # -- mail: list members ------------------------------------------------------------------

    def list_members(self, address: str, *, start: int = 0, limit: int = 100) -> Page[Member]:
        params = {"address": address, "start": str(start), "limit": str(limit)}
        return self._api(MEMBER_LIST, params, lambda info: Page.parse(info, Member.parse))

    def get_members(self, address: str, members: Sequence[str]) -> list[Member]:
        params = {"address": address, "members": _join(members, ";", "members")}
        return self._api(MEMBER_GET, params, lambda info: Page.parse(info, Member.parse).items)

    def add_members(
        self,
        address: str,
        members: Sequence[str],
        *,
        names: Sequence[str] | None = None,
        vars: Sequence[Mapping[str, str]] | None = None,
    ) -> MemberOpResult:
        params = self._member_params(address, members, names=names, vars=vars)
        return self._api(MEMBER_ADD, params, MemberOpResult.parse)

    def update_members(
        self,
        address: str,
        members: Sequence[str],
        *,
        new_members: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        vars: Sequence[Mapping[str, str]] | None = None,
    ) -> MemberOpResult:
        params = self._member_params(
            address, members, new_members=new_members, names=names, vars=vars
        )
        return self._api(MEMBER_UPDATE, params, MemberOpResult.parse)

    def delete_members(self, address: str, members: Sequence[str]) -> MemberOpResult:
        params = {"address": address, "members": _join(members, ";", "members")}
        return self._api(MEMBER_DELETE, params, MemberOpResult.parse)

    @staticmethod
    def _member_params(
        address: str,
        members: Sequence[str],
        *,
        new_members: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        vars: Sequence[Mapping[str, str]] | None = None,
    ) -> dict[str, str]:
        _same_length("new_members", new_members, members)
        _same_length("names", names, members)
        _same_length("vars", vars, members)
        params = {"address": address, "members": _join(members, ";", "members")}
        if new_members is not None:
            params["newMembers"] = _join(new_members, ";", "new_members")
        if names is not None:
            params["names"] = _join(names, ";", "names")
        if vars is not None:
            params["vars"] = _join([compact_json(v) for v in vars], ";", "vars")
        return params

    # -- transport and reply parsing ---------------------------------------------------------

    def _api(self, endpoint: str, params: Mapping[str, str], parse: Callable[[Info], T]) -> T:
        self._require("SENDCLOUD_API_USER", "SENDCLOUD_API_KEY")
        signed = {"apiUser": self._settings.api_user, "apiKey": self._settings.api_key}
        signed.update(params)
        code, _, info = self._call("POST", endpoint, signed)
        return self._parsed(endpoint, code, lambda: parse(models.info_object(info)))

    def _call(
        self, method: str, endpoint: str, params: Mapping[str, str]
    ) -> tuple[int, str, object]:
        started = time.monotonic()
        try:
            code, message, info = self._exchange(method, endpoint, params)
        except errors.SendCloudError as exc:
            metrics.record_api_call(endpoint, exc.code)
            log.warning(
                "sendcloud.call_failed",
                endpoint=endpoint,
                status_code=exc.code,
                http_status=exc.http_status,
                error=type(exc).__name__,
                duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
            raise
        metrics.record_api_call(endpoint, code)
        # Debug: a job's own "job.finished" line carries the outcome and statusCode at info, and
        # a second info line per call was an eighth of a worker's CPU per job.
        log.debug(
            "sendcloud.call",
            endpoint=endpoint,
            status_code=code,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return code, message, info

    def _exchange(
        self, method: str, endpoint: str, params: Mapping[str, str]
    ) -> tuple[int, str, object]:
        failure: errors.SendCloudError | None = None
        response: httpx.Response | None = None
        try:
            response = self._send(method, endpoint, params)
        except httpx.TimeoutException as exc:
            failure = errors.RequestTimeout(f"timed out ({_name(exc)})", endpoint=endpoint)
        except httpx.DecodingError as exc:
            failure = errors.ServerError(f"unreadable reply ({_name(exc)})", endpoint=endpoint)
        except httpx.RequestError as exc:
            failure = errors.NetworkError(f"network error ({_name(exc)})", endpoint=endpoint)
        # Raised here, outside the except blocks, so the httpx error is not the __context__.
        if failure is not None:
            raise failure
        assert response is not None
        return self._read(endpoint, response)

    def _send(self, method: str, endpoint: str, params: Mapping[str, str]) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the SendCloud client is closed")
        url = self._base_url + endpoint
        if method == "GET":
            request = httpx.Request("GET", url, params=dict(params), headers=GET_HEADERS,
                                    extensions={"timeout": self._timeout})
        else:
            request = httpx.Request("POST", url, content=form_body(params),
                                    headers=POST_HEADERS, extensions={"timeout": self._timeout})
        response = self._transport.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        return response

    def _read(self, endpoint: str, response: httpx.Response) -> tuple[int, str, object]:
        http_status = response.status_code
        try:
            reply: object = response.json()
        except ValueError:
            reply = None
        code = _status_code(reply)
        if not isinstance(reply, Mapping):
            what = f"reply is not JSON (HTTP {http_status})"
        elif http_status >= 500:
            what = f"HTTP {http_status}"
        elif code is None:
            what = f"reply without a statusCode (HTTP {http_status})"
        else:
            message = self._scrub(str(reply.get("message") or ""))
            info = reply.get("info")
            if codes.lookup(code).kind.succeeded:
                return code, message, info
            raise codes.error_for(
                code,
                message,
                endpoint=endpoint,
                http_status=http_status,
                info=dict(info) if isinstance(info, Mapping) else None,
            )
        raise errors.ServerError(what, code=code, endpoint=endpoint, http_status=http_status)

    def _require(self, *variables: str) -> None:
        """Credentials are checked per API family, so a mail-only setup needs no SMS keys."""
        values = {
            "SENDCLOUD_SMS_USER": self._settings.sms_user,
            "SENDCLOUD_SMS_KEY": self._settings.sms_key,
            "SENDCLOUD_API_USER": self._settings.api_user,
            "SENDCLOUD_API_KEY": self._settings.api_key,
        }
        for name in variables:
            if not values[name].strip():
                raise ConfigurationError(name, "is required but not set")

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    @staticmethod
    def _parsed(endpoint: str, code: int, parse: Callable[[], T]) -> T:
        try:
            return parse()
        except models.ReplyFormatError as exc:
            failure = errors.ServerError(f"malformed reply: {exc}", code=code, endpoint=endpoint)
        raise failure


def _transport_for(settings: Settings) -> httpx.BaseTransport:
    """The transport ``httpx.Client`` would pick for the base URL: through the proxy the
    environment names for its scheme, or ``ALL_PROXY``'s (``http://`` when it names none),
    unless ``NO_PROXY`` covers the host; else direct."""
    url = httpx.URL(settings.base_url)
    proxy = None
    if not urllib.request.proxy_bypass(url.host):
        proxies = urllib.request.getproxies()
        proxy = proxies.get(url.scheme) or proxies.get("all") or None
        if proxy is not None and "://" not in proxy:
            proxy = f"http://{proxy}"
    return httpx.HTTPTransport(proxy=proxy)


def _name(exc: BaseException) -> str:
    """Only the class name of an httpx error: its text may hold the URL or the request."""
    return type(exc).__name__


def _status_code(reply: object) -> int | None:
    """``statusCode``, or the lower-case ``statuscode`` of emailStatus's 50000 reply."""
    if not isinstance(reply, Mapping):
        return None
    raw = reply.get("statusCode", reply.get("statuscode"))
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw)
    return None
