"""Writes a small MaxMind-format (GeoIP2-City-shaped) database for the keen:ip_to_geo tests, with
mmdb-writer (PyPI). Usage: write_geoip_db.py <output.mmdb> [city]

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


output = sys.argv[1]
local_city = sys.argv[2] if len(sys.argv) > 2 else "Testville"
writer = MMDBWriter(ip_version=4, database_type="GeoIP2-City", languages=["en"], description="Keyhole test data")
writer.insert_network(IPSet(["81.2.69.0/24"]),
                      record("London", "England", "United Kingdom", "GB", "Europe", "SW1A", -0.1278, 51.5074))
writer.insert_network(IPSet(["127.0.0.0/8"]),
                      record(local_city, "Testshire", "Testland", "TL", "Europe", "T1 1TT", 13.4, 52.5))
writer.to_db_file(output)
