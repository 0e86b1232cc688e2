"""What Django's error page and error e-mails may show of the settings.

Django masks settings whose names contain API, TOKEN, KEY, SECRET, PASS,
SIGNATURE or HTTP_COOKIE.  A broker, database or management URL carries
its password inside the value (``CELERY_BROKER_URL``), and Flower's
credentials are ``FLOWER_BASIC_AUTH``: their names match none of those, so
this filter adds URL, BROKER, DATABASE, AUTH and CREDENTIAL, and also hides
the password of any URL-looking value left visible (a setting named
otherwise, a nested dict).
"""

import re

from django.views.debug import SafeExceptionReporterFilter as DjangoFilter

# user:password@ inside any scheme://... string.
URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]*):[^@\s]*@", re.I)


def mask_url_passwords(value: str) -> str:
    return URL_PASSWORD.sub(r"\g<scheme>\g<user>:********@", value)


class SafeExceptionReporterFilter(DjangoFilter):
    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|BROKER|DATABASE|AUTH|CREDENTIAL",
        flags=re.I,
    )

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        # isinstance, not type: lazy strings (axes' settings) pass as str too.
        if isinstance(cleansed, str):
            return mask_url_passwords(str(cleansed))
        return cleansed
