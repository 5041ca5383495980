"""What the simulated charger lets a backend read and change: its metering configuration.

One :class:`Settings` object, reached through two spellings, as on real certified chargers:

* OCPP 1.6 configuration keys (GetConfiguration / ChangeConfiguration), with the keys of the OCA
  application note "Signed Meter Values in OCPP": ``SampledDataSignReadings``,
  ``SampledDataSignUpdatedReadings``, ``PublicKeyWithSignedMeterValue``, ``MeterPublicKey[1]``
  (read-only) and the core keys ``StartTxnSampledData``, ``MeterValuesSampledData``,
  ``MeterValueSampleInterval``;
* OCPP 2.0.1 component variables (GetVariables / SetVariables): ``SampledDataCtrlr.SignReadings``,
  ``SampledDataCtrlr.SignUpdatedReadings``, ``SampledDataCtrlr.TxStartedMeasurands``,
  ``SampledDataCtrlr.TxUpdatedMeasurands``, ``SampledDataCtrlr.TxUpdatedInterval``,
  ``OCPPCommCtrlr.PublicKeyWithSignedMeterValue`` and ``FiscalMetering.PublicKey`` (read-only).

A charger without signing (``signing=False``) does not know the signing settings at all: 1.6
reports them as unknown keys (ChangeConfiguration: ``NotSupported``), 2.0.1 answers
``UnknownComponent`` for ``FiscalMetering`` and ``UnknownVariable`` for the signing variables of
``SampledDataCtrlr`` (a component such a charger does have).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
MEASURANDS = frozenset({ENERGY, POWER})
"""What the simulated meter can sample."""
PUBLIC_KEY_MODES = ("Never", "OncePerTransaction", "EveryMeterValue")


@dataclass
class Settings:
    signing_supported: bool = True
    """False: a charger whose meter cannot sign (no signing settings, no signed values)."""
    sign: bool = True
    sign_updated: bool = False
    """Sign the periodic values too (TX ``C``), not only begin and end."""
    started_measurands: tuple[str, ...] = (ENERGY,)
    updated_measurands: tuple[str, ...] = (ENERGY,)
    interval_s: int = 60
    """Seconds between periodic values in a transaction (0: none)."""
    public_key_with: str = "OncePerTransaction"
    public_key: str = ""
    """The meter's key as ``oca:base16:asn1:<hex>`` (read-only)."""

    @property
    def signing(self) -> bool:
        return self.signing_supported and self.sign


def _bool(text: str) -> bool | None:
    return {"true": True, "false": False}.get(text.strip().lower())


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() and len(text) <= 9 else None


def _measurands(text: str) -> tuple[str, ...] | None:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    return items if all(item in MEASURANDS for item in items) else None


def _mode(text: str) -> str | None:
    return text if text in PUBLIC_KEY_MODES else None


@dataclass(frozen=True)
class Setting:
    key16: str
    """The OCPP 1.6 configuration key."""
    component: str
    variable: str
    """The OCPP 2.0.1 component and variable."""
    attribute: str
    """The :class:`Settings` field."""
    parse: Callable[[str], object] | None
    """None: read-only."""
    signing: bool
    """Only a charger that signs knows it."""
    show: Callable[[object], str] = field(default=str)


def _show_bool(value: object) -> str:
    return "true" if value else "false"


def _show_list(value: object) -> str:
    assert isinstance(value, tuple)
    return ",".join(value)


SETTINGS = (
    Setting("SampledDataSignReadings", "SampledDataCtrlr", "SignReadings", "sign", _bool, True, _show_bool),
    Setting("SampledDataSignUpdatedReadings", "SampledDataCtrlr", "SignUpdatedReadings", "sign_updated",
            _bool, True, _show_bool),
    Setting("StartTxnSampledData", "SampledDataCtrlr", "TxStartedMeasurands", "started_measurands",
            _measurands, False, _show_list),
    Setting("MeterValuesSampledData", "SampledDataCtrlr", "TxUpdatedMeasurands", "updated_measurands",
            _measurands, False, _show_list),
    Setting("MeterValueSampleInterval", "SampledDataCtrlr", "TxUpdatedInterval", "interval_s", _int, False),
    Setting("PublicKeyWithSignedMeterValue", "OCPPCommCtrlr", "PublicKeyWithSignedMeterValue",
            "public_key_with", _mode, True),
    Setting("MeterPublicKey[1]", "FiscalMetering", "PublicKey", "public_key", None, True),
)  # fmt: skip
_BY_KEY = {s.key16: s for s in SETTINGS}
_BY_KEY["MeterPublicKey"] = _BY_KEY["MeterPublicKey[1]"]  # a backend may ask without the connector
_BY_VARIABLE = {(s.component, s.variable): s for s in SETTINGS}


class Known:
    """Answers for one charger: which settings exist, their values, changes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _visible(self, setting: Setting | None) -> Setting | None:
        if setting is None or (setting.signing and not self.settings.signing_supported):
            return None
        return setting

    def by_key(self, key: str) -> Setting | None:
        return self._visible(_BY_KEY.get(key))

    def by_variable(self, component: str, variable: str) -> Setting | None:
        return self._visible(_BY_VARIABLE.get((component, variable)))

    def has_component(self, component: str) -> bool:
        return any(self._visible(s) and s.component == component for s in SETTINGS)

    def all(self) -> list[Setting]:
        return [s for s in SETTINGS if self._visible(s)]

    def value(self, setting: Setting) -> str:
        return setting.show(getattr(self.settings, setting.attribute))

    def change(self, setting: Setting, text: str) -> bool:
        """Set from the text a backend sent; False if read-only or not a valid value."""
        if setting.parse is None:
            return False
        value = setting.parse(text)
        if value is None:
            return False
        setattr(self.settings, setting.attribute, value)
        return True
