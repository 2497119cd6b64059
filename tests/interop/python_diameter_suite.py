#!/usr/bin/env python3
"""Scenario suite against a running `tollgate serve`, driven by python-diameter (PyPI),
an independent Diameter stack: it does the capabilities exchange, watchdogs and
disconnect itself, and encodes/decodes every message with its own dictionary.

Usage: python_diameter_suite.py --port PORT --origin-host ocs.test.realm
Expects the subscribers provisioned by tests/cli (see `interop_python_diameter`):
  491700000101 prepaid with 1.00 EUR, 491700000102 prepaid with 0.15 EUR.
Prints one line per scenario and a closing "N passed, N failed" line; exits 1 on failure.
"""
import argparse
import socket
import struct
import sys
import time
import traceback

from diameter.message import Message
from diameter.message.avp.grouped import (
    RecipientAddress, RecipientInfo, RequestedServiceUnit, ServiceInformation, SmsInformation, UsedServiceUnit)
from diameter.message.commands.credit_control import CreditControlRequest
from diameter.message.constants import *  # noqa: F403 (the library's AVP constants)
from diameter.node import Node
from diameter.node.application import SimpleThreadingApplication

RESULTS = []


def scenario(function):
    def run(*args):
        try:
            function(*args)
            RESULTS.append((function.__name__, None))
            print(f"ok   {function.__name__}")
        except Exception as error:  # noqa: BLE001 - every failure is reported
            RESULTS.append((function.__name__, error))
            print(f"FAIL {function.__name__}: {error}")
            traceback.print_exc()
    return run


def ccr(node, session_id, request_type, number, msisdn, context="32251@3gpp.org"):
    request = CreditControlRequest()
    request.session_id = session_id
    request.origin_host = node.origin_host.encode()
    request.origin_realm = node.realm_name.encode()
    request.destination_realm = b"test.realm"
    request.auth_application_id = APP_DIAMETER_CREDIT_CONTROL_APPLICATION
    request.service_context_id = context
    request.cc_request_type = request_type
    request.cc_request_number = number
    request.add_subscription_id(E_SUBSCRIPTION_ID_TYPE_END_USER_E164, msisdn)
    return request


def grants(answer):
    return [
        (m.rating_group,
         m.granted_service_unit.cc_total_octets if getattr(m, "granted_service_unit", None) else None,
         m.result_code,
         getattr(m, "final_unit_indication", None) is not None)
        for m in answer.multiple_services_credit_control
    ]


@scenario
def data_session_initial_update_termination(node, app):
    session = node.session_generator.next_id()
    initial = ccr(node, session, E_CC_REQUEST_TYPE_INITIAL_REQUEST, 0, "491700000101")
    initial.add_multiple_services_credit_control(
        rating_group=30, requested_service_unit=RequestedServiceUnit(cc_total_octets=1 << 20))
    answer = app.send_request(initial, timeout=5)
    assert answer.result_code == E_RESULT_CODE_DIAMETER_SUCCESS, answer.result_code
    assert grants(answer) == [(30, 1 << 20, 2001, False)], grants(answer)
    update = ccr(node, session, E_CC_REQUEST_TYPE_UPDATE_REQUEST, 1, "491700000101")
    update.add_multiple_services_credit_control(
        rating_group=30, requested_service_unit=RequestedServiceUnit(cc_total_octets=1 << 20),
        used_service_unit=UsedServiceUnit(cc_total_octets=1 << 20))
    answer = app.send_request(update, timeout=5)
    assert answer.result_code == 2001 and grants(answer)[0][1] == 1 << 20, grants(answer)
    # The same update again, flagged as a retransmission: the same answer, no second charge
    # (the orchestrating test checks the balance afterwards).
    update.header.is_retransmit = True
    again = app.send_request(update, timeout=5)
    assert again.result_code == 2001 and grants(again) == grants(answer), grants(again)
    terminate = ccr(node, session, E_CC_REQUEST_TYPE_TERMINATION_REQUEST, 2, "491700000101")
    terminate.add_multiple_services_credit_control(
        rating_group=30, used_service_unit=UsedServiceUnit(cc_total_octets=512 << 10))
    answer = app.send_request(terminate, timeout=5)
    assert answer.result_code == 2001, answer.result_code


@scenario
def event_sms_direct_debit(node, app):
    event = ccr(node, node.session_generator.next_id(), E_CC_REQUEST_TYPE_EVENT_REQUEST, 0, "491700000101",
                context="32274@3gpp.org")
    event.requested_action = E_REQUESTED_ACTION_DIRECT_DEBITING
    event.requested_service_unit = RequestedServiceUnit(cc_service_specific_units=1)
    event.service_information = ServiceInformation(
        sms_information=SmsInformation(
            recipient_info=[RecipientInfo(recipient_address=[RecipientAddress(address_data="+491701112222")])]))
    answer = app.send_request(event, timeout=5)
    assert answer.result_code == 2001, answer.result_code
    assert answer.cost_information is not None


@scenario
def credit_exhaustion_gives_a_final_unit_indication(node, app):
    initial = ccr(node, node.session_generator.next_id(), E_CC_REQUEST_TYPE_INITIAL_REQUEST, 0, "491700000102")
    initial.add_multiple_services_credit_control(
        rating_group=30, requested_service_unit=RequestedServiceUnit(cc_total_octets=10 << 20))
    answer = app.send_request(initial, timeout=5)
    [(rating_group, granted, result, final)] = grants(answer)
    assert result == 2001 and final, grants(answer)
    assert (1 << 20) < granted < (10 << 20), granted
    # Asking for more than is left once the grant is used: credit limit reached.
    update = ccr(node, initial.session_id, E_CC_REQUEST_TYPE_UPDATE_REQUEST, 1, "491700000102")
    update.add_multiple_services_credit_control(
        rating_group=30, requested_service_unit=RequestedServiceUnit(cc_total_octets=10 << 20),
        used_service_unit=UsedServiceUnit(cc_total_octets=granted))
    answer = app.send_request(update, timeout=5)
    assert answer.result_code == E_RESULT_CODE_DIAMETER_CREDIT_LIMIT_REACHED, answer.result_code


@scenario
def unknown_user(node, app):
    initial = ccr(node, node.session_generator.next_id(), E_CC_REQUEST_TYPE_INITIAL_REQUEST, 0, "499999999999")
    initial.add_multiple_services_credit_control(
        rating_group=30, requested_service_unit=RequestedServiceUnit(cc_total_octets=1024))
    answer = app.send_request(initial, timeout=5)
    assert answer.result_code == E_RESULT_CODE_DIAMETER_USER_UNKNOWN, answer.result_code


def raw_exchange(port, payloads):
    """Sends raw messages on a fresh connection (after a CER) and returns the answers."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)

    def avp(code, data, flags=0x40):
        length = 8 + len(data)
        return struct.pack(">II", code, (flags << 24) | length) + data + b"\0" * (-length % 4)

    def message(command, app, hop, body, flags=0x80):
        return struct.pack(">IIIII", (1 << 24) | (20 + len(body)), (flags << 24) | command, app, hop, hop) + body

    def read():
        data = b""
        while len(data) < 4 or len(data) < struct.unpack(">I", b"\0" + data[1:4])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        return Message.from_bytes(data)

    cer = avp(264, b"raw.test.realm") + avp(296, b"test.realm") + avp(258, struct.pack(">I", 4))
    sock.sendall(message(257, 0, 1, cer))
    cea = read()
    assert cea.result_code == 2001, cea
    answers = []
    for hop, build in enumerate(payloads, start=2):
        sock.sendall(build(avp, message, hop))
        answers.append(read())
    sock.close()
    return answers


def base_ccr(avp, with_number=True):
    body = (avp(263, b"raw;1") + avp(264, b"raw.test.realm") + avp(296, b"test.realm") + avp(283, b"test.realm")
            + avp(258, struct.pack(">I", 4)) + avp(461, b"32251@3gpp.org") + avp(416, struct.pack(">I", 1)))
    if with_number:
        body += avp(415, struct.pack(">I", 0))
    return body + avp(443, avp(450, struct.pack(">I", 0)) + avp(444, b"491700000101"))


@scenario
def malformed_messages(port):
    def broken_length(avp, message, hop):
        raw = bytearray(message(272, 4, hop, base_ccr(avp)))
        raw[20 + 7] = 0xFE  # Session-Id claims to run past the message
        return bytes(raw)

    def unknown_mandatory(avp, message, hop):
        return message(272, 4, hop, base_ccr(avp) + avp(99999, b"\0\0\0\1"))

    def missing_number(avp, message, hop):
        return message(272, 4, hop, base_ccr(avp, with_number=False))

    def watchdog(avp, message, hop):
        return message(280, 0, hop, avp(264, b"raw.test.realm") + avp(296, b"test.realm"))

    answers = raw_exchange(ARGS.port, [broken_length, unknown_mandatory, missing_number, watchdog])
    codes = [a.result_code if a is not None else None for a in answers]
    assert codes == [5014, 5001, 5005, 2001], codes
    assert answers[0].failed_avp is not None and answers[1].failed_avp is not None


def main():
    node = Node("client.test.realm", "test.realm", vendor_ids=[VENDOR_TGPP])
    peer = node.add_peer(f"aaa://{ARGS.origin_host}:{ARGS.port};transport=tcp", "test.realm",
                         ip_addresses=["127.0.0.1"], is_persistent=True)
    app = SimpleThreadingApplication(APP_DIAMETER_CREDIT_CONTROL_APPLICATION, is_auth_application=True)
    node.add_application(app, [peer])
    node.start()
    try:
        app.wait_for_ready(timeout=15)
        data_session_initial_update_termination(node, app)
        event_sms_direct_debit(node, app)
        credit_exhaustion_gives_a_final_unit_indication(node, app)
        unknown_user(node, app)
        malformed_messages(ARGS.port)
    finally:
        node.stop(wait_timeout=5)
    failed = sum(1 for _, error in RESULTS if error is not None)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--origin-host", default="ocs.test.realm")
    ARGS = parser.parse_args()
    main()
