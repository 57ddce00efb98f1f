"""The address domains each provider preset serves, as data.

Discovery uses them as one more source, so ``endpoint discover someone@yahoo.com`` finds
Yahoo's server even where DNS and HTTP lookups fail (a locked-down admin machine). Only
consumer domains are listed: a company domain hosted by a provider is found by its MX.
"""

from __future__ import annotations

PRESET_DOMAINS: dict[str, tuple[str, ...]] = {
    "gmail": ("gmail.com", "googlemail.com"),
    "yahoo": ("yahoo.com", "ymail.com", "rocketmail.com", "yahoo.co.uk", "yahoo.de",
              "yahoo.fr", "yahoo.es", "yahoo.it", "yahoo.ca", "yahoo.com.au", "yahoo.co.jp",
              "yahoo.com.br", "yahoo.in"),
    "aol": ("aol.com", "aim.com", "aol.de", "aol.fr", "aol.co.uk"),
    "icloud": ("icloud.com", "me.com", "mac.com"),
    "outlook": ("outlook.com", "hotmail.com", "live.com", "msn.com", "passport.com",
                "hotmail.co.uk", "hotmail.de", "hotmail.fr", "hotmail.it", "hotmail.es",
                "outlook.de", "outlook.fr", "outlook.es", "live.co.uk", "live.de", "live.fr",
                "windowslive.com"),
    "gmx": ("gmx.de", "gmx.net", "gmx.com", "gmx.at", "gmx.ch", "gmx.us"),
    "webde": ("web.de",),
    "mailcom": ("mail.com", "email.com", "usa.com"),
    "zoho": ("zoho.com", "zohomail.com", "zoho.eu", "zoho.in"),
    "yandex": ("yandex.ru", "yandex.com", "ya.ru", "yandex.ua", "yandex.by", "yandex.kz"),
    "fastmail": ("fastmail.com", "fastmail.fm"),
}

_BY_DOMAIN = {d: preset for preset, domains in PRESET_DOMAINS.items() for d in domains}


def preset_for_domain(domain: str) -> str | None:
    """The preset whose provider serves addresses at ``domain``, else None."""
    return _BY_DOMAIN.get(domain.strip().rstrip(".").lower())
