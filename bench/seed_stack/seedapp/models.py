"""The seed's CRM tables, with Wharf's indexes so both databases answer the same query alike."""

from __future__ import annotations

from django.db import models


class Company(models.Model):
    name = models.CharField(max_length=200, unique=True)
    version = models.IntegerField(default=1)


class Customer(models.Model):
    company = models.ForeignKey(Company, on_delete=models.PROTECT, related_name="customers")
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100, db_index=True)
    status = models.CharField(max_length=16)
    version = models.IntegerField(default=1)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["company", "status", "last_name"])]
