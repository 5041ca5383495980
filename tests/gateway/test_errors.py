"""The gateway has one exception hierarchy: every exception class it defines is a GatewayError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import gateway
from gateway.errors import BodyTooLarge, CosignatureRefused, DeviceError, GatewayError, Refused

OUTSIDE = {"gateway.routes.common.ApiError"}
"""Not yet joined: the API's own answer type (status, code, message)."""


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(gateway.__path__, "gateway."):
        if module_info.name == "gateway.__main__":
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_gateway_exception_is_a_gateway_error() -> None:
    classes = _exception_classes()
    assert "gateway.errors.DeviceError" in classes
    outside = {name for name, cls in classes.items() if not issubclass(cls, GatewayError)}
    assert outside <= OUTSIDE


def test_refusals_carry_their_status_and_code() -> None:
    for cls in (DeviceError, CosignatureRefused):
        refusal = cls(409, "already_enrolled", "device d is already enrolled")
        assert isinstance(refusal, Refused)
        assert (refusal.status, refusal.code, refusal.message) == (
            409,
            "already_enrolled",
            "device d is already enrolled",
        )
        assert str(refusal) == "device d is already enrolled"
    too_large = BodyTooLarge()
    assert (too_large.status, too_large.code) == (413, "request_too_large")


def test_the_old_homes_still_export_them() -> None:
    from gateway import devices, witnesses

    assert devices.DeviceError is DeviceError
    assert witnesses.CosignatureRefused is CosignatureRefused
