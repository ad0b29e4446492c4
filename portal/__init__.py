"""The public open-data portal: pages, downloads, DCAT and CKAN API over the public_* views."""
