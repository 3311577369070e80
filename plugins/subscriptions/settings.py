"""The plugin's settings (``[plugin.subscriptions]`` in fhirhub.toml, ``FHIRHUB_SUBSCRIPTIONS_*``)."""

from __future__ import annotations

from fhirhub.sdk import PluginSettings


class SubscriptionSettings(PluginSettings):
    #: First rest-hook retry after this many seconds; each further retry waits twice as long.
    retry_initial_s: float = 1.0
    #: The wait between two retries never exceeds this.
    retry_max_interval_s: float = 3600.0
    #: After failing for this long, the subscription's status becomes ``error`` (its events
    #: are kept; setting it ``active`` again resumes delivery where it stopped).
    give_up_after_s: float = 86400.0
    #: Seconds a rest-hook POST may take (a subscription's ``backport-timeout`` overrides).
    request_timeout_s: float = 10.0
    #: Committed versions evaluated together (a batch's events go out once it is evaluated;
    #: each batch reads the subscriptions' states once).
    batch_size: int = 500
    #: Subscriptions delivered at the same time (each one strictly in order).
    delivery_workers: int = 8
    #: Plain ``http://`` notifications are POSTed by a child process of the plugin (on
    #: another core than the API's interpreter lock); off: by the delivery workers themselves.
    sender_process: bool = True
    #: At most this many queued events go in one rest-hook notification unless the
    #: subscription's ``backport-max-count`` says otherwise (a backlog drains in fewer POSTs;
    #: without a backlog each notification carries the one event that is new).
    max_events_per_notification: int = 20
    #: Seconds a websocket binding token stays valid.
    binding_token_s: int = 3600
    #: Public base of the websocket endpoint (``ws://host:port``); default: from the request.
    websocket_base: str = ""
