"""Checkov checks the Terraform export deliberately does not satisfy, each with its reason.

The test suite runs Checkov on the export of every location and fails on any failed check
not listed here (and on a listed check failing for a resource it does not name). The same
list, with the reasons, is in ``docs/infra.md``. Keep it short: a check belongs here only
when satisfying it would cross a border or needs resources this project does not own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Skip:
    """A Checkov check that may fail, on the named resources only (empty: any)."""

    check_id: str
    reason: str
    resources: tuple[str, ...] = ()

    def covers(self, check_id: str, resource: str) -> bool:
        """True when this skip excuses ``check_id`` failing on ``resource``
        (Checkov's ``type.name``; only the name part is compared)."""
        name = resource.rsplit(".", 1)[-1]
        return check_id == self.check_id and (not self.resources or name in self.resources)


CHECKOV_SKIPS: tuple[Skip, ...] = (
    Skip("CKV_AWS_144", "Cross-region replication: the check accepts any destination "
         "region, usually one abroad. Residency forbids that; an in-country failover region, "
         "when the map names one, is the only allowed replica."),
    Skip("CKV_AZURE_206", "Asks for geo-redundant replication (GRS/RA-GRS/GZRS), whose "
         "secondary is Azure's paired region, chosen by Azure and not by the region map. "
         "The plan allows ZRS or LRS only."),
    Skip("CKV_AWS_18", "S3 server access logs cannot target a bucket with Object Lock default "
         "retention (our audit bucket), and a third log bucket would fail the same check. "
         "Use CloudTrail S3 data events into the organisation's log archive (outside this "
         "project)."),
    Skip("CKV2_AWS_62", "Event notifications need a consumer (SQS/SNS/Lambda) that belongs "
         "to the application, not to the storage baseline."),
    Skip("CKV2_AZURE_33", "A private endpoint needs the customer's virtual network and "
         "subnet (outside this project). Public network access is disabled, so until one "
         "exists the account is reachable only by trusted Azure services.", ("account",)),
    Skip("CKV2_AZURE_32", "Same as CKV2_AZURE_33 for the Key Vault: private endpoint needs the "
         "customer's network; public network access is disabled.", ("vault",)),
    Skip("CKV2_AZURE_21", "Blob read logging is an Azure Monitor diagnostic setting that "
         "needs a Log Analytics workspace or event hub of the customer (outside this project).",
         ("data", "audit")),
    Skip("CKV_AZURE_33", "Queue service logging: the queue service is not used, and setting "
         "its properties needs data-plane access that the disabled public network blocks.",
         ("account",)),
    Skip("CKV_AZURE_40", "A fixed expiration_date would make the key expire and lock storage "
         "out; the rotation policy rotates every 90 days and each version expires after 2 "
         "years (expire_after).", ("cmk",)),
    Skip("CKV_GCP_62", "The audit bucket is the access-log sink of the data bucket; logging "
         "the sink into itself adds nothing.", ("audit",)),
    Skip("CKV_GCP_78", "GCS forbids Object Versioning on a bucket with a retention policy; "
         "the audit bucket's locked retention policy already makes every object undeletable "
         "and unchangeable for the retention period.", ("audit",)),
)


def unexpected_failures(failed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The ``(check_id, resource)`` failures no skip covers."""
    return [(cid, res) for cid, res in failed
            if not any(skip.covers(cid, res) for skip in CHECKOV_SKIPS)]
