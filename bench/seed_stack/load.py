"""Create the seed stack's tables and load the CRM rows Wharf's benchmark exported (a JSON
file, argv[1]); print a token for the benchmark's requests."""

from __future__ import annotations

import json
import sys
from datetime import datetime

import seedsite  # noqa: F401 (configures Django)
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from seedapp.models import Company, Customer

call_command("migrate", run_syncdb=True, verbosity=0)
with open(sys.argv[1]) as fh:
    data = json.load(fh)
Company.objects.bulk_create([Company(id=c["id"], name=c["name"]) for c in data["companies"]])
Customer.objects.bulk_create(
    [
        Customer(
            id=c["id"],
            company_id=c["company_id"],
            first_name=c["first_name"],
            last_name=c["last_name"],
            status=c["status"],
            version=c["version"],
            created_at=datetime.fromisoformat(c["created_at"]),
            updated_at=datetime.fromisoformat(c["updated_at"]),
        )
        for c in data["customers"]
    ]
)
print(Token.objects.create(user=User.objects.create_user("bench")).key)
