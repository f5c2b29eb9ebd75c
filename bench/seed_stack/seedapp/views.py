"""The seed's customer list: a ModelViewSet with filters on company and status, and ordering."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import filters, serializers, viewsets

from seedapp.models import Customer


class CustomerSerializer(serializers.HyperlinkedModelSerializer):
    class Meta:
        model = Customer
        fields = [
            "id", "url", "company_id", "first_name", "last_name", "status", "version",
            "created_at", "updated_at",
        ]  # fmt: skip


class CustomerViewSet(viewsets.ModelViewSet):
    queryset = Customer.objects.all().order_by("id")
    serializer_class = CustomerSerializer
    filter_backends = [DjangoFilterBackend, filters.OrderingFilter]
    filterset_fields = ["company", "status"]
    ordering_fields = ["last_name", "first_name", "id"]
