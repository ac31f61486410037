"""Where a compute (inference) endpoint serves from (promise MV-16: study results are
produced in the clinic's location). ``compute_endpoint_problem`` accepts a host only when
the location's region is the DNS label right before a provider-owned regional suffix;
everything else is refused with the expected form. Ports and paths do not matter."""

from __future__ import annotations

import pytest

from residency_sdk._endpoints import compute_endpoint_problem


def _refusal(provider: str, region: str, example: str) -> str:
    return (f"the host does not place it in {provider} region {region} (the region must be "
            f"the DNS label before the provider's regional suffix, e.g. {example})")


AWS_DE = "https://runtime.sagemaker.eu-central-1.amazonaws.com"
AWS_CN = "https://runtime.sagemaker.cn-north-1.amazonaws.com.cn"
GCP_DE = "https://europe-west3-aiplatform.googleapis.com"
AZURE_DE = "https://NAME.germanywestcentral.inference.ml.azure.com"


@pytest.mark.parametrize(("provider", "region", "endpoint"), [
    ("aws", "eu-central-1", AWS_DE),
    ("aws", "eu-central-1", "https://RUNTIME.SageMaker.EU-CENTRAL-1.amazonaws.com"),
    ("aws", "eu-central-1", AWS_DE + ":443/endpoints/ct/invocations"),
    ("aws", "cn-north-1", AWS_CN),
    ("gcp", "europe-west3", GCP_DE),
    ("gcp", "europe-west3", GCP_DE + "/v1/projects/p/locations/europe-west3/endpoints/1"),
    ("gcp", "europe-west3", "https://europe-west3-a.googleapis.com"),
    ("gcp", "europe-west3", "https://aiplatform.europe-west3.rep.googleapis.com"),
    ("gcp", "europe-west3", "https://model-abc.europe-west3.run.app"),
    ("azure", "germanywestcentral", "https://ws.germanywestcentral.inference.ml.azure.com"),
    ("azure", "germanywestcentral", "https://app.germanywestcentral.azurecontainerapps.io"),
    ("azure", "germanywestcentral", "https://germanywestcentral.api.cognitive.microsoft.com"),
    ("azure", "germanywestcentral",
     "https://x.germanywestcentral.api.cognitive.microsoft.com/score"),
])
def test_an_in_region_compute_endpoint_is_accepted(provider: str, region: str,
                                                   endpoint: str) -> None:
    assert compute_endpoint_problem(provider, region, endpoint) is None


@pytest.mark.parametrize(("provider", "region", "endpoint", "example"), [
    # another region, or the region somewhere other than right before the suffix
    ("aws", "eu-central-1", "https://runtime.sagemaker.us-east-1.amazonaws.com", AWS_DE),
    ("aws", "eu-central-1", "https://eu-central-1.amazonaws.com", AWS_DE),
    ("aws", "eu-central-1", "https://runtime.sagemaker.eu-central-1.amazonaws.com.evil.io",
     AWS_DE),
    ("aws", "eu-central-1", "https://runtime.sagemaker.eu-central-1.amazonaws.com.cn",
     AWS_DE),
    ("aws", "cn-north-1", "https://runtime.sagemaker.cn-north-1.amazonaws.com", AWS_CN),
    ("gcp", "europe-west3", "https://us-central1-aiplatform.googleapis.com", GCP_DE),
    ("gcp", "europe-west3", "https://europe-west3-.googleapis.com", GCP_DE),
    ("gcp", "europe-west3", "https://europe-west30-aiplatform.googleapis.com", GCP_DE),
    ("gcp", "europe-west3", "https://europe-west3-aiplatform.x.googleapis.com", GCP_DE),
    ("gcp", "europe-west3", "https://europe-west3-aiplatform.example.com", GCP_DE),
    ("gcp", "europe-west3", "https://x.europe-west3-aiplatform.googleapis.com", GCP_DE),
    ("gcp", "europe-west3", "https://europe-west3.rep.googleapis.com", GCP_DE),
    ("gcp", "europe-west3", "https://model.europe-west3.run.app.evil.io", GCP_DE),
    ("gcp", "europe-west3", "https://europe-west3-aiplatform.googleapis.com.evil.io",
     GCP_DE),
    ("azure", "germanywestcentral", "https://germanywestcentral.inference.ml.azure.com",
     AZURE_DE),
    ("azure", "germanywestcentral", "https://ws.francecentral.inference.ml.azure.com",
     AZURE_DE),
    ("azure", "germanywestcentral", "https://germanywestcentral.azurecontainerapps.io",
     AZURE_DE),
    ("azure", "germanywestcentral", "https://inference.de.residency.example", AZURE_DE),
    # no host at all
    ("aws", "eu-central-1", "https://[not-an-ip", AWS_DE),
    ("gcp", "europe-west3", "", GCP_DE),
])
def test_any_other_compute_endpoint_is_refused_with_the_expected_form(
        provider: str, region: str, endpoint: str, example: str) -> None:
    assert compute_endpoint_problem(provider, region, endpoint) == _refusal(
        provider, region, example)


def test_a_provider_without_an_endpoint_form_must_state_where_it_serves() -> None:
    assert compute_endpoint_problem("local", "local", "http://127.0.0.1:8080") == (
        "a local compute target has no in-region endpoint form: state where it serves from")
