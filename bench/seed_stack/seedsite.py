"""The seed's own stack for the CRM list, as its README built it: Django REST framework on
SQLite under gunicorn (sync workers), with django-filter and ordering, a HyperlinkedModel
serializer (the seed's `url` fields) and a version column. Wharf's work is added where the seed
had none, so both do the same: a bearer-style token checked against the database
(TokenAuthentication) and a page of 50 with the total (PageNumberPagination).

Runs in its own virtualenv (bench/seed_stack.py makes it), never in Wharf's.
"""

from __future__ import annotations

import os

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="seedsite",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "rest_framework",
            "rest_framework.authtoken",
            "django_filters",
            "seedapp",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.environ["SEED_STACK_DB"],
            }
        },
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
            "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
            "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
            "PAGE_SIZE": 50,
        },
    )

import django

django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.urls import include, path  # noqa: E402
from rest_framework import routers  # noqa: E402
from seedapp.views import CustomerViewSet  # noqa: E402

router = routers.DefaultRouter()
router.register("customer", CustomerViewSet)
urlpatterns = [path("", include(router.urls))]
application = get_wsgi_application()
