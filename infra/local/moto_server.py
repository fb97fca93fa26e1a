"""moto's server (SES and KMS) for keystead's local stack, with SES's sandbox kept per region as in a real account.

It also answers SES v2's GetAccount and PutAccountSuppressionAttributes, which moto lacks, so that `keystead doctor`
can read the account-level suppression list: on for bounces and complaints, as in a new account, until a
PutAccountSuppressionAttributes changes it (per region, as in AWS).

In the regions listed in KEYSTEAD_LOCAL_SES_PRODUCTION_REGIONS (default: us-east-1, the local stack's region) the
account has production access: a quota of 50,000 emails a day at 14 a second, and mail to any address. Every other
region is in the sandbox, as a new AWS account is everywhere: 200 emails a day at 1 a second, and mail only to
verified addresses, refused with SES's own MessageRejected message. moto alone reports the sandbox quota everywhere
and delivers to anyone, which no real account does.

Usage: python infra/local/moto_server.py -H 127.0.0.1 -p 5005   (the arguments of moto_server)
"""

import os
import sys

import json

from moto.server import main
from moto.ses import models
from moto.ses.exceptions import MessageRejectedError
from moto.sesv2 import urls as sesv2_urls
from moto.sesv2.responses import SESV2Response

PRODUCTION_REGIONS = {
    region.strip()
    for region in os.environ.get("KEYSTEAD_LOCAL_SES_PRODUCTION_REGIONS", "us-east-1").split(",")
    if region.strip()
}

_get_send_quota = models.SESBackend.get_send_quota
_send_email = models.SESBackend.send_email


def get_send_quota(self):
    quota = _get_send_quota(self)
    if self.region_name in PRODUCTION_REGIONS:
        quota.max24_hour_send = 50000
        quota.max_send_rate = 14
    return quota


def send_email(self, source, subject, body, destinations):
    if self.region_name not in PRODUCTION_REGIONS and self._is_verified_address(source):
        unverified = [
            address
            for addresses in destinations.values()
            for address in addresses
            if not self._is_verified_address(address)
        ]
        if unverified:
            self.rejected_messages_count += 1
            raise MessageRejectedError(
                "Email address is not verified. The following identities failed the check in region "
                f"{self.region_name.upper()}: {', '.join(unverified)}"
            )
    return _send_email(self, source, subject, body, destinations)


models.SESBackend.get_send_quota = get_send_quota
models.SESBackend.send_email = send_email

# SES v2's account: the suppressed reasons per (account, region).
SUPPRESSED_REASONS = {}


def get_account(self):
    reasons = SUPPRESSED_REASONS.get((self.current_account, self.region), ["BOUNCE", "COMPLAINT"])
    production = self.region in PRODUCTION_REGIONS
    return json.dumps(
        {
            "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "HEALTHY",
            "ProductionAccessEnabled": production,
            "SendQuota": {
                "Max24HourSend": 50000.0 if production else 200.0,
                "MaxSendRate": 14.0 if production else 1.0,
                "SentLast24Hours": 0.0,
            },
            "SendingEnabled": True,
            "SuppressionAttributes": {"SuppressedReasons": reasons},
        }
    )


def put_account_suppression_attributes(self):
    params = json.loads(self.body or "{}")
    SUPPRESSED_REASONS[(self.current_account, self.region)] = params.get("SuppressedReasons", [])
    return "{}"


SESV2Response.get_account = get_account
SESV2Response.put_account_suppression_attributes = put_account_suppression_attributes
# moto's catch-all "/v2/.*" route does not reach these: each needs a route of its own.
sesv2_urls.url_paths["{0}/v2/email/account$"] = SESV2Response.dispatch
sesv2_urls.url_paths["{0}/v2/email/account/suppression$"] = SESV2Response.dispatch

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
