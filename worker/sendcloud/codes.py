"""Every return code SendCloud documents, what it means, and how this product treats it.

This is the one place a statusCode is mapped to behaviour. ``Kind`` says what a code means for a
job; ``ERROR_CLASSES`` says which exception a failing kind raises. A code not in the table is
treated as ``InvalidRequestError`` so it fails visibly instead of looping in retries.

Sources: docs/sendcloud-api/return-codes.txt (apiv2), sms.txt (smsapi and the SMSHook delivery
codes) and email-status.txt (50000). smsapi and apiv2 share 200 and 501 with the same meaning; the
SMSHook codes live in their own table because they describe one recipient's delivery, not a call.

Judgement calls (the docs give a meaning, not a retry rule):
- "failed to create/delete/update ..." with no stated cause is OPERATION_FAILED, a ServerError:
  SendCloud failed on its side, and every such call is an idempotent list, member or label change.
- 461 (timestamp off) is CLOCK: the client re-syncs its offset and retries once by itself, so a
  461 that still escapes means the clock or the key is wrong, an AuthError for an operator.
- 40517 (list does not belong to the user) is INVALID: the alias is wrong, the credentials work.
- 40219, 41012, 41112 (count limits on templates, domains, apiUsers) are INVALID, not QUOTA: no
  top-up lifts them, and QUOTA pauses the whole account.
- 40904 (quota check failed) is QUOTA like 499.
- 312 (all failed) is REJECTED: permanent, but its ``items`` carry a reason for each phone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from worker.sendcloud import errors


class Kind(enum.Enum):
    OK = "ok"
    PARTIAL = "partial"
    INFO = "info"
    DUPLICATE = "duplicate"
    THROTTLED = "throttled"
    SERVER = "server"
    OPERATION_FAILED = "operation_failed"
    MINUTE_LIMIT = "minute_limit"
    DAILY_LIMIT = "daily_limit"
    QUOTA = "quota"
    AUTH = "auth"
    CLOCK = "clock"
    INVALID = "invalid"
    REJECTED = "rejected"
    CONFLICT = "conflict"
    UNDELIVERABLE = "undeliverable"

    @property
    def succeeded(self) -> bool:
        return self in (Kind.OK, Kind.PARTIAL, Kind.INFO)


ERROR_CLASSES: dict[Kind, type[errors.SendCloudError]] = {
    Kind.DUPLICATE: errors.DuplicateRequestError,
    Kind.THROTTLED: errors.ThrottledError,
    Kind.SERVER: errors.ServerError,
    Kind.OPERATION_FAILED: errors.ServerError,
    Kind.MINUTE_LIMIT: errors.PhoneMinuteLimitError,
    Kind.DAILY_LIMIT: errors.PhoneDailyLimitError,
    Kind.QUOTA: errors.QuotaError,
    Kind.AUTH: errors.AuthError,
    Kind.CLOCK: errors.ClockSkewError,
    Kind.INVALID: errors.InvalidRequestError,
    Kind.REJECTED: errors.RecipientsRejectedError,
    Kind.CONFLICT: errors.ConflictError,
    Kind.UNDELIVERABLE: errors.UndeliverableError,
}


@dataclass(frozen=True)
class Code:
    code: int
    meaning: str
    kind: Kind
    source: str  # "sms", "api" or "hook"

    @property
    def error_class(self) -> type[errors.SendCloudError] | None:
        return ERROR_CLASSES.get(self.kind)


# Meanings are the docs' English text, typos included, so a search of the docs finds them.
CODES: dict[int, Code] = {
    200: Code(200, 'request was successful', Kind.OK, 'sms'),
    311: Code(311, 'requests numbers were partially successful', Kind.PARTIAL, 'sms'),
    312: Code(312, 'all request failed', Kind.REJECTED, 'sms'),
    400: Code(400, 'duplicate request', Kind.DUPLICATE, 'sms'),
    411: Code(411, 'phone number cannot be empty', Kind.INVALID, 'sms'),
    412: Code(412, 'invalid phone number format', Kind.INVALID, 'sms'),
    413: Code(413, 'duplicate phone numbers', Kind.INVALID, 'sms'),
    421: Code(421, 'incorrect signature parameter', Kind.AUTH, 'sms'),
    422: Code(422, 'incorrect signature', Kind.AUTH, 'sms'),
    431: Code(431, 'template does not exist', Kind.INVALID, 'sms'),
    432: Code(432, 'template not submitted for verification or verify unsuccessfully', Kind.INVALID, 'sms'),
    433: Code(433, 'template ID cannot be empty', Kind.INVALID, 'sms'),
    441: Code(441, 'invalid substituted variable format', Kind.INVALID, 'sms'),
    451: Code(451, 'invalid scheduled time format', Kind.INVALID, 'sms'),
    452: Code(452, 'scheduled time is earlier than sever time', Kind.INVALID, 'sms'),
    461: Code(461, 'invalid timestamp, time interval between timestamp and sever time is longer than 6s', Kind.CLOCK, 'sms'),
    471: Code(471, 'smsUser does not exist', Kind.AUTH, 'sms'),
    472: Code(472, 'smsUser cannot be empty', Kind.AUTH, 'sms'),
    473: Code(473, 'no permission, free registered users are not eligible for SMS', Kind.AUTH, 'sms'),
    474: Code(474, 'user does not exist', Kind.AUTH, 'sms'),
    481: Code(481, 'phone number and substitution variable cannot be empty', Kind.INVALID, 'sms'),
    482: Code(482, 'invalid format of phone number and substituted variable', Kind.INVALID, 'sms'),
    483: Code(483, 'substituted variable cannot be longer than 32 characters', Kind.INVALID, 'sms'),
    496: Code(496, 'too many messages sent to this number within one minute', Kind.MINUTE_LIMIT, 'sms'),
    498: Code(498, 'too many messages sent to this number in one day', Kind.DAILY_LIMIT, 'sms'),
    499: Code(499, 'insufficient balance', Kind.QUOTA, 'sms'),
    501: Code(501, 'sever exception', Kind.SERVER, 'sms'),
    601: Code(601, 'no permission', Kind.AUTH, 'sms'),
    6001: Code(6001, 'no permission to access', Kind.AUTH, 'api'),
    40000: Code(40000, 'duplicate request', Kind.DUPLICATE, 'api'),
    40001: Code(40001, 'start cannot be empty', Kind.INVALID, 'api'),
    40002: Code(40002, 'invalid start', Kind.INVALID, 'api'),
    40003: Code(40003, 'limit cannot be empty', Kind.INVALID, 'api'),
    40004: Code(40004, 'invalid limit', Kind.INVALID, 'api'),
    40005: Code(40005, 'authentication failed', Kind.AUTH, 'api'),
    40006: Code(40006, 'nvalid days format, it must be an integer greater than zero', Kind.INVALID, 'api'),
    40007: Code(40007, 'invalid startDate format (e.g. “2013-03-19”)', Kind.INVALID, 'api'),
    40008: Code(40008, 'invalid endDate format (e.g. “2013-03-19”)', Kind.INVALID, 'api'),
    40009: Code(40009, 'labelIdList cannot be empty', Kind.INVALID, 'api'),
    40010: Code(40010, 'apiUserList cannot be empty', Kind.INVALID, 'api'),
    40011: Code(40011, 'email cannot be empty', Kind.INVALID, 'api'),
    40012: Code(40012, 'invalid email format', Kind.INVALID, 'api'),
    40013: Code(40013, 'domainList cannot be empty', Kind.INVALID, 'api'),
    40014: Code(40014, 'label ID cannot be empty', Kind.INVALID, 'api'),
    40015: Code(40015, 'invalid label ID format', Kind.INVALID, 'api'),
    40016: Code(40016, 'invalid apiUserList format', Kind.INVALID, 'api'),
    40017: Code(40017, 'invalid format of aggregation parameters', Kind.INVALID, 'api'),
    40100: Code(40100, 'label was successfully created', Kind.INFO, 'api'),
    40101: Code(40101, 'failed to create label', Kind.OPERATION_FAILED, 'api'),
    40102: Code(40102, 'label ID cannot be empty', Kind.INVALID, 'api'),
    40103: Code(40103, 'invalid label ID', Kind.INVALID, 'api'),
    40104: Code(40104, 'label name cannot be empty', Kind.INVALID, 'api'),
    40105: Code(40105, 'label name should be 1-255 characters', Kind.INVALID, 'api'),
    40106: Code(40106, 'the label corresponding to label ID does not exist', Kind.INVALID, 'api'),
    40107: Code(40107, 'label was successfully deleted', Kind.INFO, 'api'),
    40108: Code(40108, 'failed to delete label', Kind.OPERATION_FAILED, 'api'),
    40109: Code(40109, 'label was successfully updated', Kind.INFO, 'api'),
    40110: Code(40110, 'failed to update label', Kind.OPERATION_FAILED, 'api'),
    40111: Code(40111, 'query cannot be empty', Kind.INVALID, 'api'),
    40112: Code(40112, 'query should be 1-255 characters', Kind.INVALID, 'api'),
    40113: Code(40113, 'label name already exists', Kind.CONFLICT, 'api'),
    40201: Code(40201, 'invokeName cannot be empty', Kind.INVALID, 'api'),
    40202: Code(40202, 'invalid invokeName format', Kind.INVALID, 'api'),
    40203: Code(40203, 'template type cannot be empty', Kind.INVALID, 'api'),
    40204: Code(40204, 'invalid template type, it can only be 0 or 1', Kind.INVALID, 'api'),
    40205: Code(40205, 'templateStat cannot be empty', Kind.INVALID, 'api'),
    40206: Code(40206, 'invalid templateStat, it can only be one of -1, -2, 1, 0', Kind.INVALID, 'api'),
    40207: Code(40207, 'name cannot be empty', Kind.INVALID, 'api'),
    40208: Code(40208, 'invalid name format', Kind.INVALID, 'api'),
    40209: Code(40209, 'subject cannot be empty', Kind.INVALID, 'api'),
    40210: Code(40210, 'invalid subject format', Kind.INVALID, 'api'),
    40211: Code(40211, 'html cannot be empty', Kind.INVALID, 'api'),
    40212: Code(40212, 'invalid html format', Kind.INVALID, 'api'),
    40213: Code(40213, 'text cannot be empty', Kind.INVALID, 'api'),
    40214: Code(40214, 'invalid text format', Kind.INVALID, 'api'),
    40215: Code(40215, 'failed to create template', Kind.OPERATION_FAILED, 'api'),
    40216: Code(40216, 'the template corresponding to invokeName does not exist', Kind.INVALID, 'api'),
    40217: Code(40217, 'failed to delete template', Kind.OPERATION_FAILED, 'api'),
    40218: Code(40218, 'failed to update template', Kind.OPERATION_FAILED, 'api'),
    40219: Code(40219, 'user can have no more than 50 templates', Kind.INVALID, 'api'),
    40220: Code(40220, 'invokeName already exists', Kind.CONFLICT, 'api'),
    40221: Code(40221, 'isSubmitAudit cannot be empty', Kind.INVALID, 'api'),
    40222: Code(40222, 'invalid isSubmitAudit format', Kind.INVALID, 'api'),
    40223: Code(40223, 'template is pending approval and cannot be modified', Kind.CONFLICT, 'api'),
    40224: Code(40224, 'cancel cannot be empty', Kind.INVALID, 'api'),
    40225: Code(40225, 'invalid cancel format', Kind.INVALID, 'api'),
    40226: Code(40226, 'template is pending approval, do not submit again', Kind.CONFLICT, 'api'),
    40227: Code(40227, 'template has been approved, do not submit again', Kind.CONFLICT, 'api'),
    40228: Code(40228, 'template not approved, do not withdraw the approval request', Kind.CONFLICT, 'api'),
    40229: Code(40229, 'template not submitted for approval, unable to withdraw approval request', Kind.CONFLICT, 'api'),
    40301: Code(40301, 'user does not exist', Kind.AUTH, 'api'),
    40401: Code(40401, 'unsubscribe record was successfully created', Kind.INFO, 'api'),
    40402: Code(40402, 'failed to create unsubscribe record', Kind.OPERATION_FAILED, 'api'),
    40403: Code(40403, 'unsubscribe record was successfully deleted', Kind.INFO, 'api'),
    40404: Code(40404, 'failed to delete unsubscribe record', Kind.OPERATION_FAILED, 'api'),
    40501: Code(40501, 'name cannot be empty', Kind.INVALID, 'api'),
    40502: Code(40502, 'address list name should be 1-48 characters', Kind.INVALID, 'api'),
    40503: Code(40503, 'address cannot be empty', Kind.INVALID, 'api'),
    40504: Code(40504, 'address list alias should be 1-48 characters', Kind.INVALID, 'api'),
    40505: Code(40505, 'address list alias already exists', Kind.CONFLICT, 'api'),
    40506: Code(40506, 'desc cannot be empty', Kind.INVALID, 'api'),
    40507: Code(40507, 'address list description should be 1-250 characters', Kind.INVALID, 'api'),
    40508: Code(40508, 'failed to create address list', Kind.OPERATION_FAILED, 'api'),
    40509: Code(40509, 'newAddress cannot be empty', Kind.INVALID, 'api'),
    40510: Code(40510, 'new address list alias should be 1-48 characters', Kind.INVALID, 'api'),
    40511: Code(40511, 'invalid address parameters', Kind.INVALID, 'api'),
    40512: Code(40512, 'members cannot be empty', Kind.INVALID, 'api'),
    40513: Code(40513, 'member address should be 1-48 characters', Kind.INVALID, 'api'),
    40514: Code(40514, 'number of member address should be more than 0', Kind.INVALID, 'api'),
    40515: Code(40515, 'number of member address should be no more than 1000', Kind.INVALID, 'api'),
    40516: Code(40516, 'failed to add member', Kind.OPERATION_FAILED, 'api'),
    40517: Code(40517, 'address list does not belong to the user', Kind.INVALID, 'api'),
    40518: Code(40518, 'member address does not conform to the specification', Kind.INVALID, 'api'),
    40519: Code(40519, 'failed to delete member', Kind.OPERATION_FAILED, 'api'),
    40520: Code(40520, 'vars cannot be empty', Kind.INVALID, 'api'),
    40521: Code(40521, 'variables in vars parameter are not equal to member addresses', Kind.INVALID, 'api'),
    40522: Code(40522, 'vars parameter does not adhere to JSON string syntax', Kind.INVALID, 'api'),
    40531: Code(40531, 'The maximum length of a single member variable is 1024 characters', Kind.INVALID, 'api'),
    40601: Code(40601, 'bounce record was successfully deleted', Kind.INFO, 'api'),
    40602: Code(40602, 'failed to delete bounce record', Kind.OPERATION_FAILED, 'api'),
    40701: Code(40701, 'group ID cannot be empty', Kind.INVALID, 'api'),
    40702: Code(40702, 'invalid format of group ID', Kind.INVALID, 'api'),
    40703: Code(40703, 'event type cannot be empty', Kind.INVALID, 'api'),
    40704: Code(40704, 'invalid event type format, no event type available', Kind.INVALID, 'api'),
    40705: Code(40705, 'url cannot be empty', Kind.INVALID, 'api'),
    40706: Code(40706, 'invalid url format', Kind.INVALID, 'api'),
    40707: Code(40707, 'url test failed', Kind.INVALID, 'api'),
    40708: Code(40708, 'url already exists', Kind.CONFLICT, 'api'),
    40709: Code(40709, 'webhook configuration not found', Kind.INVALID, 'api'),
    40710: Code(40710, 'failed to create webhook configuration', Kind.OPERATION_FAILED, 'api'),
    40711: Code(40711, 'failed to delete webhook configuration', Kind.OPERATION_FAILED, 'api'),
    40712: Code(40712, 'failed to modify webhook configuration', Kind.OPERATION_FAILED, 'api'),
    40801: Code(40801, 'fromAddress cannot be empty', Kind.INVALID, 'api'),
    40802: Code(40802, 'invalid fromAddress format', Kind.INVALID, 'api'),
    40803: Code(40803, 'fromName cannot be empty', Kind.INVALID, 'api'),
    40804: Code(40804, 'invalid fromName format', Kind.INVALID, 'api'),
    40805: Code(40805, 'recipient address cannot be empty', Kind.INVALID, 'api'),
    40806: Code(40806, 'illegal addresses in the recipient address list', Kind.INVALID, 'api'),
    40807: Code(40807, 'recipient addresses should be no more than 100', Kind.INVALID, 'api'),
    40808: Code(40808, 'subject cannot be empty', Kind.INVALID, 'api'),
    40809: Code(40809, 'invalid subject format', Kind.INVALID, 'api'),
    40810: Code(40810, 'replyto cannot be empty', Kind.INVALID, 'api'),
    40811: Code(40811, 'invalid replyto format', Kind.INVALID, 'api'),
    40812: Code(40812, 'xsmtpapi cannot be empty', Kind.INVALID, 'api'),
    40813: Code(40813, 'invalid xsmtpapi format', Kind.INVALID, 'api'),
    40814: Code(40814, 'xsmtpapi parse cannot be empty', Kind.INVALID, 'api'),
    40815: Code(40815, 'xsmtpapi must contain field “to”', Kind.INVALID, 'api'),
    40816: Code(40816, 'parse of field “to” cannot be empty', Kind.INVALID, 'api'),
    40817: Code(40817, 'xsmtpapi parsing error', Kind.INVALID, 'api'),
    40818: Code(40818, 'attachments cannot be empty', Kind.INVALID, 'api'),
    40819: Code(40819, 'attachment should be no larger than 10485760 bytes', Kind.INVALID, 'api'),
    40820: Code(40820, 'no permission to use address list', Kind.AUTH, 'api'),
    40821: Code(40821, 'address list was successfully created', Kind.INFO, 'api'),
    40822: Code(40822, 'failed to create address list', Kind.OPERATION_FAILED, 'api'),
    40823: Code(40823, 'mail template does not exist', Kind.INVALID, 'api'),
    40824: Code(40824, 'template not approved', Kind.INVALID, 'api'),
    40825: Code(40825, 'mail template does not match API-USER type', Kind.INVALID, 'api'),
    40826: Code(40826, 'template parameter and subject cannot be empty both', Kind.INVALID, 'api'),
    40827: Code(40827, 'array “to” should be no longer than 100', Kind.INVALID, 'api'),
    40828: Code(40828, 'reply address cannot be empty', Kind.INVALID, 'api'),
    40829: Code(40829, 'invalid reply address format', Kind.INVALID, 'api'),
    40830: Code(40830, 'plain cannot be empty', Kind.INVALID, 'api'),
    40831: Code(40831, 'invalid plain format', Kind.INVALID, 'api'),
    40832: Code(40832, 'startTime cannot be empty', Kind.INVALID, 'api'),
    40833: Code(40833, 'invalid startTime format', Kind.INVALID, 'api'),
    40834: Code(40834, 'endTime cannot be empty', Kind.INVALID, 'api'),
    40835: Code(40835, 'invalid endTime format', Kind.INVALID, 'api'),
    40836: Code(40836, 'title cannot be empty', Kind.INVALID, 'api'),
    40837: Code(40837, 'invalid title format', Kind.INVALID, 'api'),
    40838: Code(40838, 'organizer cannot be empty', Kind.INVALID, 'api'),
    40839: Code(40839, 'invalid organizer format', Kind.INVALID, 'api'),
    40840: Code(40840, 'organizer email address cannot be empty', Kind.INVALID, 'api'),
    40841: Code(40841, 'invalid format of organizer email address', Kind.INVALID, 'api'),
    40842: Code(40842, 'location cannot be empty', Kind.INVALID, 'api'),
    40843: Code(40843, 'invalid location format', Kind.INVALID, 'api'),
    40844: Code(40844, 'description cannot be empty', Kind.INVALID, 'api'),
    40845: Code(40845, 'invalid description format', Kind.INVALID, 'api'),
    40846: Code(40846, 'participant cannot be empty', Kind.INVALID, 'api'),
    40847: Code(40847, 'invalid participant format', Kind.INVALID, 'api'),
    40848: Code(40848, 'participant email address cannot be empty', Kind.INVALID, 'api'),
    40849: Code(40849, 'invalid format of participatant email address', Kind.INVALID, 'api'),
    40850: Code(40850, 'the number of participants is not equal to the number of email addresses', Kind.INVALID, 'api'),
    40851: Code(40851, 'failed to assemble emails', Kind.OPERATION_FAILED, 'api'),
    40852: Code(40852, 'cc address cannot be empty', Kind.INVALID, 'api'),
    40853: Code(40853, 'invalid cc address format', Kind.INVALID, 'api'),
    40854: Code(40854, 'cc addresses should be no more than 100', Kind.INVALID, 'api'),
    40855: Code(40855, 'bcc address cannot be empty', Kind.INVALID, 'api'),
    40856: Code(40856, 'invalid bcc address format', Kind.INVALID, 'api'),
    40857: Code(40857, 'bcc addresses should be no more than 100', Kind.INVALID, 'api'),
    40858: Code(40858, 'respEmailId cannot be empty', Kind.INVALID, 'api'),
    40859: Code(40859, 'invalid respEmailId format', Kind.INVALID, 'api'),
    40860: Code(40860, 'gzipCompress cannot be empty', Kind.INVALID, 'api'),
    40861: Code(40861, 'invalid gzipCompress format', Kind.INVALID, 'api'),
    40862: Code(40862, 'address lists with format error in “to”', Kind.INVALID, 'api'),
    40863: Code(40863, 'nonexistent address lists in “to”', Kind.INVALID, 'api'),
    40864: Code(40864, 'address lists should be no more than 5', Kind.INVALID, 'api'),
    40865: Code(40865, 'failed to extract html files', Kind.OPERATION_FAILED, 'api'),
    40866: Code(40866, 'failed to extract plain files', Kind.OPERATION_FAILED, 'api'),
    40867: Code(40867, 'Abnormal attachment processing', Kind.OPERATION_FAILED, 'api'),
    40868: Code(40868, 'headers cannot be empty', Kind.INVALID, 'api'),
    40869: Code(40869, 'nvalid headers format', Kind.INVALID, 'api'),
    40870: Code(40870, 'html and plain cannot be empty both', Kind.INVALID, 'api'),
    40871: Code(40871, 'html format error', Kind.INVALID, 'api'),
    40872: Code(40872, 'address list cannot be empty', Kind.INVALID, 'api'),
    40873: Code(40873, 'useAddressList cannot be empty', Kind.INVALID, 'api'),
    40874: Code(40874, 'invalid useAddressList format', Kind.INVALID, 'api'),
    40875: Code(40875, 'the length of embedded picture ID is not equal to the length of the attachment', Kind.INVALID, 'api'),
    40876: Code(40876, 'invalid format of isCancel parameter', Kind.INVALID, 'api'),
    40877: Code(40877, 'abstract cannot be empty', Kind.INVALID, 'api'),
    40878: Code(40878, 'abstract cannot be longer than 255 bytes', Kind.INVALID, 'api'),
    40879: Code(40879, 'replyto cannot be more than 3', Kind.INVALID, 'api'),
    40880: Code(40880, 'invalid email format in field “to” of xsmtpapi', Kind.INVALID, 'api'),
    40901: Code(40901, 'email sending failed', Kind.OPERATION_FAILED, 'api'),
    40902: Code(40902, 'unknown error when processing email', Kind.OPERATION_FAILED, 'api'),
    40903: Code(40903, 'email sent successfully', Kind.INFO, 'api'),
    40904: Code(40904, 'quota check failed', Kind.QUOTA, 'api'),
    40905: Code(40905, 'quota check passed', Kind.INFO, 'api'),
    40906: Code(40906, 'quota check temporarily passed', Kind.INFO, 'api'),
    40907: Code(40907, 'no need to match template for corresponding content of the API-USER', Kind.INFO, 'api'),
    40908: Code(40908, 'email content does not match template', Kind.INVALID, 'api'),
    40909: Code(40909, 'email content matches template', Kind.INFO, 'api'),
    40910: Code(40910, 'email content temporarily matches template', Kind.INFO, 'api'),
    40911: Code(40911, 'error occurred when matching email content and template', Kind.OPERATION_FAILED, 'api'),
    41001: Code(41001, 'name cannot be empty', Kind.INVALID, 'api'),
    41002: Code(41002, 'name should be 1-250 characters', Kind.INVALID, 'api'),
    41003: Code(41003, 'name does not conform to domain specification', Kind.INVALID, 'api'),
    41004: Code(41004, 'newName cannot be empty', Kind.INVALID, 'api'),
    41005: Code(41005, 'newName should be 1-250 characters', Kind.INVALID, 'api'),
    41006: Code(41006, 'newName does not conform to domain specification', Kind.INVALID, 'api'),
    41007: Code(41007, 'type cannot be empty', Kind.INVALID, 'api'),
    41008: Code(41008, 'type does not conform to specification', Kind.INVALID, 'api'),
    41009: Code(41009, 'verify cannot be empty', Kind.INVALID, 'api'),
    41010: Code(41010, 'verify does not conform to specification', Kind.INVALID, 'api'),
    41011: Code(41011, 'verify parsing error', Kind.INVALID, 'api'),
    41012: Code(41012, 'user can create no more than 5 domains', Kind.INVALID, 'api'),
    41013: Code(41013, 'name parameter error, multiple domains', Kind.INVALID, 'api'),
    41014: Code(41014, 'domain does not exist', Kind.INVALID, 'api'),
    41015: Code(41015, 'failed to create domain', Kind.OPERATION_FAILED, 'api'),
    41016: Code(41016, 'failed to modify domain', Kind.OPERATION_FAILED, 'api'),
    41101: Code(41101, 'emailType cannot be empty', Kind.INVALID, 'api'),
    41102: Code(41102, 'emailType does not conform to specification', Kind.INVALID, 'api'),
    41103: Code(41103, 'cType cannot be empty', Kind.INVALID, 'api'),
    41104: Code(41104, 'cType does not conform to specification', Kind.INVALID, 'api'),
    41105: Code(41105, 'domainName cannot be empty', Kind.INVALID, 'api'),
    41106: Code(41106, 'domainName does not conform to specification', Kind.INVALID, 'api'),
    41107: Code(41107, 'dimianName should be 1-250 characters', Kind.INVALID, 'api'),
    41108: Code(41108, 'domain of domainName does not exist', Kind.INVALID, 'api'),
    41109: Code(41109, 'user information does not exist', Kind.AUTH, 'api'),
    41110: Code(41110, 'name cannot be empty', Kind.INVALID, 'api'),
    41111: Code(41111, 'name does not conform to specification (name should be 6-32 characters; only numbers and letters can be included)', Kind.INVALID, 'api'),
    41112: Code(41112, 'apiUser should be no more than 10', Kind.INVALID, 'api'),
    41113: Code(41113, 'open cannot be empty', Kind.INVALID, 'api'),
    41114: Code(41114, 'open does not conform to specification', Kind.INVALID, 'api'),
    41115: Code(41115, 'click cannot be empty', Kind.INVALID, 'api'),
    41116: Code(41116, 'click does not conform to specification', Kind.INVALID, 'api'),
    41117: Code(41117, 'unsubscribe cannot be empty', Kind.INVALID, 'api'),
    41118: Code(41118, 'unsubscribe does not conform to specification', Kind.INVALID, 'api'),
    41119: Code(41119, 'failed to create apiUser', Kind.OPERATION_FAILED, 'api'),
    49901: Code(49901, 'invalid url format', Kind.INVALID, 'api'),
    49902: Code(49902, 'abnormal http request', Kind.OPERATION_FAILED, 'api'),
    49903: Code(49903, 'http request failed', Kind.OPERATION_FAILED, 'api'),
    49904: Code(49904, 'http request was successful', Kind.INFO, 'api'),
    49905: Code(49905, 'http result parsing error', Kind.OPERATION_FAILED, 'api'),
    49906: Code(49906, 'other errors', Kind.OPERATION_FAILED, 'api'),
    50000: Code(50000, 'interface frequency is limited', Kind.THROTTLED, 'api'),
    50001: Code(50001, '536 Frequency limited', Kind.THROTTLED, 'api'),
}

HOOK_CODES: dict[int, Code] = {
    410: Code(410, 'processing failed, number is in global intercept list', Kind.UNDELIVERABLE, 'hook'),
    420: Code(420, 'processing failed, number is in local intercept list', Kind.UNDELIVERABLE, 'hook'),
    430: Code(430, 'processing failed, unsubscribe', Kind.UNDELIVERABLE, 'hook'),
    440: Code(440, 'processing failed, key words filtering', Kind.UNDELIVERABLE, 'hook'),
    450: Code(450, 'processing failed, wrong replacement variable', Kind.UNDELIVERABLE, 'hook'),
    460: Code(460, 'processing failed, SMS content cannot be more than 500 characters', Kind.UNDELIVERABLE, 'hook'),
    500: Code(500, 'SMS failure, non-existed number', Kind.UNDELIVERABLE, 'hook'),
    510: Code(510, 'SMS failure, number out of service', Kind.UNDELIVERABLE, 'hook'),
    550: Code(550, 'SMS failure, template content was complained', Kind.UNDELIVERABLE, 'hook'),
    580: Code(580, 'SMS failure, phone powered off', Kind.UNDELIVERABLE, 'hook'),
    590: Code(590, 'SMS failure, other reasons', Kind.UNDELIVERABLE, 'hook'),
}


def lookup(code: int) -> Code:
    """The table entry for an API statusCode; unknown codes are INVALID, never retried."""
    return CODES.get(code) or Code(code, "undocumented statusCode", Kind.INVALID, "unknown")


def error_for(
    code: int,
    message: str,
    *,
    endpoint: str,
    http_status: int | None = None,
    info: dict[str, object] | None = None,
) -> errors.SendCloudError:
    """The exception for a failing API statusCode, carrying SendCloud's own message."""
    entry = lookup(code)
    cls = entry.error_class or errors.InvalidRequestError
    return cls(
        message or entry.meaning,
        code=code,
        endpoint=endpoint,
        http_status=http_status,
        info=dict(info or {}),
    )
