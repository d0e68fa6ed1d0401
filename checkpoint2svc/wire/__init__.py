"""The wire: what a service and its clients share, and nothing else of checkpoint2svc.

The type IR (``type_ir``), the names generated code uses (``names``), a signature
(``signature``), values in their JSON and protobuf forms (``json_values``; ``proto_values`` with
``proto_columns`` for tables and series and ``proto_struct`` for JSON in protobuf), the
errors a call can end in (``errors``, ``client_errors``), message limits (``limits``) and the
bases of a generated client (``rest_client``, ``grpc_client``).

Its modules import each other relatively and nothing else of the package, so a generated client
package carries this folder as it is (``<package>/_wire/``, byte for byte) and the tests of
these modules cover that copy too.
"""
