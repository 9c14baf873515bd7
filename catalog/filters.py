import django_filters

from catalog.models import Track


class TrackFilter(django_filters.FilterSet):
    collection = django_filters.CharFilter()
    composer = django_filters.CharFilter()
    region = django_filters.CharFilter()
    key = django_filters.CharFilter(help_text='e.g. "D major"')
    time_signature = django_filters.CharFilter(help_text='e.g. "6/8"')
    is_generated = django_filters.BooleanFilter()

    class Meta:
        model = Track
        fields = ["collection", "composer", "region", "key", "time_signature", "is_generated"]
