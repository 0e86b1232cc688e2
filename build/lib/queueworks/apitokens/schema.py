"""The OpenAPI security scheme of ``ApiTokenAuthentication``: the header
``Authorization: Token <key>``, under the name clients already know."""

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme


class ApiTokenScheme(KnoxTokenScheme):
    target_class = "queueworks.apitokens.authentication.ApiTokenAuthentication"
    name = "tokenAuth"
